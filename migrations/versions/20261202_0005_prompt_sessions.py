"""prompt sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "atelier_prompt_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("anchor", sa.Text(), nullable=False),
        sa.Column("head", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_prompt_sessions")),
    )
    with op.batch_alter_table("atelier_prompt_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_atelier_prompt_sessions_owner_updated_at"), ["owner", "updated_at"], unique=False
        )
    op.create_table(
        "atelier_prompt_turns",
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("prompt_before", sa.Text(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("chosen", sa.Text(), nullable=False),
        sa.Column("chosen_index", sa.Integer(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("rewrite", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("picked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["atelier_prompt_sessions.id"],
            name=op.f("fk_atelier_prompt_turns_session_id_atelier_prompt_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "number", name=op.f("pk_atelier_prompt_turns")),
    )


def downgrade() -> None:
    op.drop_table("atelier_prompt_turns")
    with op.batch_alter_table("atelier_prompt_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_atelier_prompt_sessions_owner_updated_at"))
    op.drop_table("atelier_prompt_sessions")
