"""Operational state: the worker's heartbeat, read by /readyz, /metrics and the console banner."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from broadcast.models.base import Base


class WorkerHeartbeat(Base):
    """The last sign of life of a worker process (one row per role, e.g. "worker")."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(64))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    beat_at: Mapped[float] = mapped_column(Float)
