"""training events of a third kind, ``sample``: the sample images an image LoRA's checkpoint rendered

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 18:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = "atelier_training_events"
KIND = "ck_atelier_training_events_kind"


def upgrade() -> None:
    with op.batch_alter_table(EVENTS, schema=None) as batch_op:
        batch_op.add_column(sa.Column("images", sa.JSON(), nullable=True))  # sample file names
        batch_op.drop_constraint(op.f(KIND), type_="check")
        batch_op.create_check_constraint(op.f(KIND), "kind IN ('metrics', 'message', 'sample')")


def downgrade() -> None:
    op.execute(f"DELETE FROM {EVENTS} WHERE kind = 'sample'")
    with op.batch_alter_table(EVENTS, schema=None) as batch_op:
        batch_op.drop_constraint(op.f(KIND), type_="check")
        batch_op.create_check_constraint(op.f(KIND), "kind IN ('metrics', 'message')")
        batch_op.drop_column("images")
