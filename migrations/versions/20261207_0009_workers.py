"""the processes that run jobs: one row each, refreshed by a heartbeat (atelier cluster status)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKERS = "atelier_workers"


def upgrade() -> None:
    op.create_table(
        WORKERS,
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_workers")),
    )
    op.create_index(op.f("ix_atelier_workers_heartbeat_at"), WORKERS, ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_atelier_workers_heartbeat_at"), table_name=WORKERS)
    op.drop_table(WORKERS)
