"""prompt-session turns that edit the current image: the turn's strategy and edit model, the session's

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SESSIONS = "atelier_prompt_sessions"
TURNS = "atelier_prompt_turns"


def upgrade() -> None:
    # Every turn stored before this revision rewrote the prompt; a candidate's kind, seed and edited image
    # are keys of its JSON dict, read with those defaults, so no candidate needs rewriting.
    with op.batch_alter_table(SESSIONS, schema=None) as batch_op:
        batch_op.add_column(sa.Column("edit_model", sa.String(length=128), nullable=True))
    with op.batch_alter_table(TURNS, schema=None) as batch_op:
        batch_op.add_column(sa.Column("strategy", sa.String(length=16), nullable=False, server_default="rewrite"))
        batch_op.add_column(sa.Column("edit_model", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TURNS, schema=None) as batch_op:
        batch_op.drop_column("edit_model")
        batch_op.drop_column("strategy")
    with op.batch_alter_table(SESSIONS, schema=None) as batch_op:
        batch_op.drop_column("edit_model")
