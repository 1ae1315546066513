"""Broadcasts (播发任务), their per-speaker deliveries (播发回执) and the signed commands sent."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broadcast.models.base import Base, UTCDateTime, utcnow

PRIORITIES = ("emergency", "urgent", "normal", "background")

# Delivery states; the terminal ones never change again.
DELIVERY_STATES = (
    "held",  # approvals: recorded, waiting for an approver (先审后播); no command yet
    "queued",
    "sent",
    "acknowledged",
    "playing",
    "finished",
    "failed",
    "preempted",
    "missed",
    "rejected",
)
TERMINAL_STATES = frozenset({"finished", "failed", "preempted", "missed", "rejected"})
STATE_ORDER = {"queued": 0, "sent": 1, "acknowledged": 2, "playing": 3}


class Broadcast(Base):
    """A request to play one clip on a set of targets, now or at a time."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="RESTRICT"), index=True)
    priority: Mapped[str] = mapped_column(String(16))
    volume: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    targets: Mapped[list] = mapped_column(JSON)  # region codes and speaker ids, as the user chose them
    wire_targets: Mapped[list] = mapped_column(JSON)  # the minimal set in protocol form: region:CODE, speaker:ID
    start_at: Mapped[float] = mapped_column(Float)  # unix seconds
    expires_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="sending", index=True)
    source: Mapped[str] = mapped_column(String(16), default="console")  # console | api | cli | schedule | alert
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="broadcast", order_by="Delivery.speaker_id")


class Delivery(Base):
    """The state of one broadcast on one speaker."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("broadcast_id", "speaker_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    speaker_id: Mapped[str] = mapped_column(ForeignKey("speakers.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, default=None)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    finished_at: Mapped[float | None] = mapped_column(Float, default=None)
    # The outbox: a sent delivery its speaker has not acknowledged is re-sent to the speaker's own topic.
    resends: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_resend_at: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    broadcast: Mapped[Broadcast] = relationship(back_populates="deliveries")


class Command(Base):
    """One signed command. Its autoincrement id is the protocol's rising sequence number."""

    __tablename__ = "commands"
    # SQLite must never reuse a sequence number.
    __table_args__: ClassVar[dict] = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    command_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), index=True, default=None
    )
    topics: Mapped[list] = mapped_column(JSON, default=list)
    body: Mapped[dict] = mapped_column(JSON, default=dict)  # what is signed, so a retry sends the same bytes
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    published_at: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    publisher: Mapped[str | None] = mapped_column(String(96), default=None)  # broker client id that sent it
    superseded_by: Mapped[int | None] = mapped_column(Integer, default=None)  # the retry that replaced it
