"""early decision of the long-tail detector

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "atelier_knowledge_calibrations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("early_features", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("early_detector", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("early_threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("early_threshold")
        batch_op.drop_column("early_detector")
        batch_op.drop_column("early_features")
