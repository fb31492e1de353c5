"""training jobs (fine-tuning a language model, training an image LoRA) and their events

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOBS = "atelier_training_jobs"
EVENTS = "atelier_training_events"
STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        JOBS,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("base_model", sa.String(length=64), nullable=False),
        sa.Column("result_name", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("result_model", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(STATUSES, name=op.f("ck_atelier_training_jobs_status")),
        sa.CheckConstraint("kind IN ('llm-finetune', 'image-lora')", name=op.f("ck_atelier_training_jobs_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_training_jobs")),
    )
    op.create_index(op.f("ix_atelier_training_jobs_owner"), JOBS, ["owner"], unique=False)
    op.create_index(op.f("ix_atelier_training_jobs_status"), JOBS, ["status"], unique=False)
    op.create_index(op.f("ix_atelier_training_jobs_owner_created_at"), JOBS, ["owner", "created_at"], unique=False)
    op.create_table(
        EVENTS,
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("validation_loss", sa.Float(), nullable=True),
        sa.CheckConstraint("kind IN ('metrics', 'message')", name=op.f("ck_atelier_training_events_kind")),
        sa.ForeignKeyConstraint(
            ["job_id"],
            [f"{JOBS}.id"],
            name=op.f("fk_atelier_training_events_job_id_atelier_training_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name=op.f("pk_atelier_training_events")),
    )


def downgrade() -> None:
    op.drop_table(EVENTS)
    op.drop_index(op.f("ix_atelier_training_jobs_owner_created_at"), table_name=JOBS)
    op.drop_index(op.f("ix_atelier_training_jobs_status"), table_name=JOBS)
    op.drop_index(op.f("ix_atelier_training_jobs_owner"), table_name=JOBS)
    op.drop_table(JOBS)
