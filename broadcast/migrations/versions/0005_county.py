"""a real county on day one: speaker address, notes, SIM number, drill flag and retirement

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("notes", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("sim_number", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("test_speaker", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("speakers", schema=None) as batch_op:
        batch_op.drop_column("retired_at")
        batch_op.drop_column("test_speaker")
        batch_op.drop_column("sim_number")
        batch_op.drop_column("notes")
        batch_op.drop_column("address")
