"""Schedules (定时计划), playlists of clips, and one row per occurrence that fired, was missed or cancelled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broadcast.models.base import Base, UTCDateTime, utcnow

SCHEDULE_STATES = ("active", "paused", "ended", "deleted")
# scheduled: its broadcast exists (it rides the snapshots); sent: its play command went out; missed: too late
# (coalesced: `missed_count` occurrences up to `last_missed_at`); cancelled: by a person or an edit;
# refused: the broadcast service said no at firing time (quiet hours, scope, ...); `reason` says why.
RUN_STATES = ("scheduled", "sent", "missed", "cancelled", "refused")


class Playlist(Base):
    """An ordered series of clips (a 普法 series of 30 episodes) that a schedule advances through or rotates."""

    __tablename__ = "playlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(8), default="advance")  # advance | rotate
    clip_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Schedule(Base):
    """A recurring or one-off rule that creates ordinary broadcasts; times are local wall times in `timezone`."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    clip_id: Mapped[int | None] = mapped_column(ForeignKey("clips.id", ondelete="RESTRICT"), default=None)
    playlist_id: Mapped[int | None] = mapped_column(ForeignKey("playlists.id", ondelete="RESTRICT"), default=None)
    targets: Mapped[list] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    volume: Mapped[int | None] = mapped_column(Integer, default=None)
    rule: Mapped[str | None] = mapped_column(String(500), default=None)  # RRULE without UNTIL/COUNT
    cron: Mapped[str | None] = mapped_column(String(120), default=None)
    dtstart: Mapped[str] = mapped_column(String(19))  # local wall time, ISO 8601 without offset
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    until: Mapped[str | None] = mapped_column(String(19), default=None)
    count: Mapped[int | None] = mapped_column(Integer, default=None)
    exdates: Mapped[list] = mapped_column(JSON, default=list)  # local dates and cancelled local datetimes
    grace_s: Mapped[float] = mapped_column(Float, default=300.0)
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Occurrences before this unix time have been turned into runs (broadcasts or misses).
    materialized_until: Mapped[float | None] = mapped_column(Float, default=None)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ScheduleRun(Base):
    """One occurrence of a schedule; the unique (schedule, time, version) makes firing exactly-once.

    The version rises with every change that cancels occurrences, so an edited rule may fire at a time whose
    previous version was cancelled.
    """

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "occurrence_at", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    occurrence_at: Mapped[float] = mapped_column(Float)  # unix seconds
    occurrence_index: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL"), index=True, default=None
    )
    clip_id: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(16), index=True)
    missed_count: Mapped[int] = mapped_column(Integer, default=0)
    last_missed_at: Mapped[float | None] = mapped_column(Float, default=None)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
