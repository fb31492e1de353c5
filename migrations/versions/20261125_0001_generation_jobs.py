"""generation jobs

Revision ID: 0001
Revises:
Create Date: 2026-11-25 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "atelier_generation_jobs"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_atelier_generation_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_generation_jobs")),
    )
    op.create_index(op.f("ix_atelier_generation_jobs_owner"), TABLE, ["owner"], unique=False)
    op.create_index(op.f("ix_atelier_generation_jobs_status"), TABLE, ["status"], unique=False)
    op.create_index(
        op.f("ix_atelier_generation_jobs_owner_created_at"), TABLE, ["owner", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_atelier_generation_jobs_owner_created_at"), table_name=TABLE)
    op.drop_index(op.f("ix_atelier_generation_jobs_status"), table_name=TABLE)
    op.drop_index(op.f("ix_atelier_generation_jobs_owner"), table_name=TABLE)
    op.drop_table(TABLE)
