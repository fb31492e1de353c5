"""deciding while the model answers: the token-probability abort cut and the question-state probe

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 13:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "atelier_knowledge_calibrations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("abort_min_prob", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("probe", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_column("probe")
        batch_op.drop_column("abort_min_prob")
