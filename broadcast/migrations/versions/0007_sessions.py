"""sessions: a per-user session epoch, so logout and password or role changes end every session

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.add_column("users", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    # Login throttling looks failures up by (name, address) together.
    op.create_index("ix_login_attempts_username_address", "login_attempts", ["username", "address"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_login_attempts_username_address", table_name="login_attempts")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("session_epoch")
