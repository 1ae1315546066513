"""alerts: CAP messages received, their decisions, sensor trigger and feed state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(length=255), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_key", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("msg_type", sa.String(length=16), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=True),
        sa.Column("event_code", sa.String(length=32), nullable=True),
        sa.Column("level", sa.String(length=8), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("urgency", sa.String(length=16), nullable=True),
        sa.Column("certainty", sa.String(length=16), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("headline", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.String(length=8), nullable=False),
        sa.Column("region_codes", sa.JSON(), nullable=False),
        sa.Column("speaker_ids", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column("tone_broadcast_id", sa.Integer(), nullable=True),
        sa.Column("replaced_by", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"], ["broadcasts.id"], name=op.f("fk_alerts_broadcast_id_broadcasts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tone_broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_alerts_tone_broadcast_id_broadcasts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("sender", "identifier", "sent_key", name="uq_alerts_message"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_broadcast_id"), ["broadcast_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_state"), ["state"], unique=False)

    op.create_table(
        "alert_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_decisions_alert_id_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_decisions")),
    )
    with op.batch_alter_table("alert_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_decisions_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "alert_trigger_states",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_at", sa.Float(), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_alert_trigger_states")),
    )
    op.create_table(
        "alert_feed_states",
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("last_ok_at", sa.Float(), nullable=True),
        sa.Column("last_poll_at", sa.Float(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("entries_seen", sa.Integer(), nullable=False),
        sa.Column("seen", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("url", name=op.f("pk_alert_feed_states")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("alert_feed_states")
    op.drop_table("alert_trigger_states")
    with op.batch_alter_table("alert_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_decisions_alert_id"))
    op.drop_table("alert_decisions")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_state"))
        batch_op.drop_index(batch_op.f("ix_alerts_sender"))
        batch_op.drop_index(batch_op.f("ix_alerts_received_at"))
        batch_op.drop_index(batch_op.f("ix_alerts_broadcast_id"))
    op.drop_table("alerts")
