"""model edits

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "atelier_model_edits"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("editor", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("rephrases", sa.JSON(), nullable=False),
        sa.Column("locality", sa.JSON(), nullable=False),
        sa.Column("reliability", sa.Float(), nullable=True),
        sa.Column("generality", sa.Float(), nullable=True),
        sa.Column("locality_score", sa.Float(), nullable=True),
        sa.Column("fluency", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('applied', 'rolled_back')", name=op.f("ck_atelier_model_edits_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_model_edits")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_atelier_model_edits_model"), ["model"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_atelier_model_edits_model_status_position"), ["model", "status", "position"], unique=False
        )
        # One applied edit per place in a model's chain (two processes applying at once: one fails).
        batch_op.create_index(
            "uq_atelier_model_edits_active_position",
            ["model", "position"],
            unique=True,
            sqlite_where=sa.text("status = 'applied'"),
            postgresql_where=sa.text("status = 'applied'"),
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index("uq_atelier_model_edits_active_position")
        batch_op.drop_index(batch_op.f("ix_atelier_model_edits_model_status_position"))
        batch_op.drop_index(batch_op.f("ix_atelier_model_edits_model"))

    op.drop_table(TABLE)
