"""knowledge calibrations record the gate chosen by cross-validation and its cut

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 03:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "atelier_knowledge_calibrations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        # calibrations made before the choice keep deciding by their detector
        batch_op.add_column(sa.Column("gate", sa.String(length=16), nullable=False, server_default="detector"))
        batch_op.add_column(sa.Column("gate_threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("gate_threshold")
        batch_op.drop_column("gate")
