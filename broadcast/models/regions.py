"""Administrative regions (county → township → village → grid) and the speakers in grids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broadcast.models.base import Base, UTCDateTime, utcnow

LEVELS = ("county", "township", "village", "grid")


class Region(Base):
    """One region: a county, township (乡镇), village (村/社区) or grid (网格)."""

    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16), index=True)
    parent_code: Mapped[str | None] = mapped_column(
        ForeignKey("regions.code", ondelete="RESTRICT"), index=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Region | None] = relationship(remote_side=[code])


class Speaker(Base):
    """One network loudspeaker (终端/音柱) hung in a grid."""

    __tablename__ = "speakers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    grid_code: Mapped[str] = mapped_column(ForeignKey("regions.code", ondelete="RESTRICT"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    volume: Mapped[int] = mapped_column(Integer, default=80)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Broker credentials of this speaker: only a hash is kept; the password is shown once at provisioning.
    broker_password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    # Health, from the speaker's retained state and heartbeats.
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    agent_version: Mapped[str | None] = mapped_column(String(32), default=None)
    playing_broadcast_id: Mapped[str | None] = mapped_column(String(64), default=None)
    clock_offset_ms: Mapped[float | None] = mapped_column(Float, default=None)
    cache_bytes: Mapped[int | None] = mapped_column(Integer, default=None)
    cache_cap_bytes: Mapped[int | None] = mapped_column(Integer, default=None)
    rejected_count: Mapped[int] = mapped_column(Integer, default=0)
    schedule_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # last snapshot acked
    state: Mapped[dict | None] = mapped_column(JSON, default=None)
    # Inventory, from the installer's sheet (issue 10); a test speaker (演练终端) is for drills.
    address: Mapped[str | None] = mapped_column(String(200), default=None)
    notes: Mapped[str | None] = mapped_column(String(500), default=None)
    sim_number: Mapped[str | None] = mapped_column(String(32), default=None)
    test_speaker: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    grid: Mapped[Region] = relationship()
