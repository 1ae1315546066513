"""Clips: audio ready to play, normalized and stored by content hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broadcast.models.base import Base, UTCDateTime, utcnow


class Clip(Base):
    """One audio item (音频/节目): recorded, uploaded or synthesized."""

    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(8))
    mime: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    loudness_lufs: Mapped[float] = mapped_column(Float)
    true_peak_dbtp: Mapped[float] = mapped_column(Float)
    loudness_range_lu: Mapped[float | None] = mapped_column(Float, default=None)
    source: Mapped[str] = mapped_column(String(16))  # tts | upload | recording
    source_format: Mapped[str | None] = mapped_column(String(16), default=None)
    engine: Mapped[str | None] = mapped_column(String(32), default=None)
    voice: Mapped[str | None] = mapped_column(String(64), default=None)
    title: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    spoken_text: Mapped[str | None] = mapped_column(Text, default=None)
    # Same text + voice + options gives the same key, so a second request reuses this clip.
    tts_key: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    waveform: Mapped[list | None] = mapped_column(JSON, default=None)
    warnings: Mapped[list | None] = mapped_column(JSON, default=None)
    tags: Mapped[list | None] = mapped_column(JSON, default=None)  # the clip library's labels (普法, 防火...)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # hidden from new schedules
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
