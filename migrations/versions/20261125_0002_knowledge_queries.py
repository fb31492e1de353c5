"""knowledge queries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "atelier_knowledge_calibrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("embedder", sa.String(length=128), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("threshold_gece", sa.Float(), nullable=False),
        sa.Column("decision_threshold", sa.Float(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("detector", sa.JSON(), nullable=False),
        sa.Column("mean_gradient", sa.JSON(), nullable=False),
        sa.Column("neighbours", sa.JSON(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_knowledge_calibrations")),
    )
    with op.batch_alter_table("atelier_knowledge_calibrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_atelier_knowledge_calibrations_model"), ["model"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_atelier_knowledge_calibrations_model_created_at"), ["model", "created_at"], unique=False
        )

    op.create_table(
        "atelier_knowledge_queries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("parametric_answer", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("passages", sa.JSON(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('parametric', 'retrieved')", name=op.f("ck_atelier_knowledge_queries_decision")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_atelier_knowledge_queries")),
    )
    with op.batch_alter_table("atelier_knowledge_queries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_atelier_knowledge_queries_owner"), ["owner"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_atelier_knowledge_queries_owner_created_at"), ["owner", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("atelier_knowledge_queries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_atelier_knowledge_queries_owner_created_at"))
        batch_op.drop_index(batch_op.f("ix_atelier_knowledge_queries_owner"))

    op.drop_table("atelier_knowledge_queries")
    with op.batch_alter_table("atelier_knowledge_calibrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_atelier_knowledge_calibrations_model_created_at"))
        batch_op.drop_index(batch_op.f("ix_atelier_knowledge_calibrations_model"))

    op.drop_table("atelier_knowledge_calibrations")
