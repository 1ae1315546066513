"""Warnings (预警): each CAP message received, every decision taken on it, sensor trigger and feed state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broadcast.models.base import Base, UTCDateTime, utcnow

# What became of an alert, as the API reports it.
ALERT_ACTIONS = ("broadcast", "held", "ignored", "duplicate", "cancelled", "updated")
# Where an alert stands now: active (playing or queued), held (waits for an operator), done, logged, ...
ALERT_STATES = ("active", "held", "logged", "superseded", "cancelled", "done")


class Alert(Base):
    """One valid CAP message (or sensor trigger) as received, with the raw text kept for audit."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("sender", "identifier", "sent_key", name="uq_alerts_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255), index=True)
    sent: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_key: Mapped[str] = mapped_column(String(40))  # sent as a UTC ISO instant: the duplicate key
    status: Mapped[str] = mapped_column(String(16))  # Actual | Exercise | System | Test | Draft
    msg_type: Mapped[str] = mapped_column(String(16))  # Alert | Update | Cancel | Ack | Error
    references: Mapped[list] = mapped_column(JSON, default=list)  # [[sender, identifier, sent_key], ...]
    event: Mapped[str | None] = mapped_column(String(200), default=None)
    event_code: Mapped[str | None] = mapped_column(String(32), default=None)  # e.g. GB/T 11B03
    level: Mapped[str | None] = mapped_column(String(8), default=None)  # red | orange | yellow | blue
    severity: Mapped[str | None] = mapped_column(String(16), default=None)
    urgency: Mapped[str | None] = mapped_column(String(16), default=None)
    certainty: Mapped[str | None] = mapped_column(String(16), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    headline: Mapped[str | None] = mapped_column(Text, default=None)
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    decision: Mapped[str] = mapped_column(String(16))  # one of ALERT_ACTIONS
    reason: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)  # one of ALERT_STATES
    audience: Mapped[str] = mapped_column(String(8), default="public")  # public | test
    region_codes: Mapped[list] = mapped_column(JSON, default=list)
    speaker_ids: Mapped[list] = mapped_column(JSON, default=list)
    text: Mapped[str | None] = mapped_column(Text, default=None)  # what the speakers say
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), index=True, default=None
    )
    tone_broadcast_id: Mapped[int | None] = mapped_column(  # the attention tone, sent before the speech
        ForeignKey("broadcasts.id", ondelete="SET NULL"), default=None
    )
    replaced_by: Mapped[int | None] = mapped_column(Integer, default=None)  # the Update or Cancel that ended it
    source: Mapped[str] = mapped_column(String(64))  # api:<user> | hmac | feed:<url> | trigger:<source>
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    decisions: Mapped[list[AlertDecision]] = relationship(back_populates="alert", order_by="AlertDecision.id")


class AlertDecision(Base):
    """One decision on an alert: accepted, held, ignored, duplicate, updated, cancelled, confirmed... and why."""

    __tablename__ = "alert_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict | None] = mapped_column(JSON, default=None)

    alert: Mapped[Alert] = relationship(back_populates="decisions")


class TriggerState(Base):
    """The hysteresis state of one sensor source: armed until the value crosses, re-armed once it falls back."""

    __tablename__ = "alert_trigger_states"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    last_value: Mapped[float | None] = mapped_column(Float, default=None)
    last_at: Mapped[float | None] = mapped_column(Float, default=None)  # the sensor's own time of the last reading
    alert_id: Mapped[int | None] = mapped_column(Integer, default=None)  # the alert it raised last


class FeedState(Base):
    """One polled warning feed: when it last answered well, and its last fault (an alarm while it stands)."""

    __tablename__ = "alert_feed_states"

    url: Mapped[str] = mapped_column(String(500), primary_key=True)
    last_ok_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_poll_at: Mapped[float | None] = mapped_column(Float, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500), default=None)  # None while the feed is healthy
    entries_seen: Mapped[int] = mapped_column(Integer, default=0)
    seen: Mapped[list] = mapped_column(JSON, default=list)  # ids of the newest entries taken, so none is read twice
