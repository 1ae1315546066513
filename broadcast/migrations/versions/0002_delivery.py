"""delivery you can trust: the outbox columns of deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resends", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_resend_at", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_next_resend_at"), ["next_resend_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_next_resend_at"))
        batch_op.drop_column("next_resend_at")
        batch_op.drop_column("resends")
