"""jobs record the worker process running them and how many times they were started (requeued when that
worker is no longer live)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 12:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOBS = "atelier_generation_jobs"


def upgrade() -> None:
    with op.batch_alter_table(JOBS, schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table(JOBS, schema=None) as batch_op:
        batch_op.drop_column("attempts")
        batch_op.drop_column("worker_id")
