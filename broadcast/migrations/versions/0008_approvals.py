"""approvals: broadcasts and schedules that wait for an operator above their author (先审后播)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("region_codes", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(length=200), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["submitted_by"], ["users.id"], name=op.f("fk_approvals_submitted_by_users")),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_approvals_decided_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index("ix_approvals_kind_object", "approvals", ["kind", "object_id"])
    op.create_index(op.f("ix_approvals_state"), "approvals", ["state"])
    op.create_index(op.f("ix_approvals_submitted_at"), "approvals", ["submitted_at"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("approvals")
