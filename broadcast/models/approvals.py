"""Approvals (先审后播): a broadcast or schedule that waits for an operator above its author."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from broadcast.models.base import Base, UTCDateTime, utcnow

APPROVAL_KINDS = ("broadcast", "schedule")
APPROVAL_STATES = ("pending", "approved", "rejected", "withdrawn")


class Approval(Base):
    """One request for approval of a broadcast or a schedule, and the decision on it."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_kind_object", "kind", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # broadcast | schedule
    object_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    region_codes: Mapped[list] = mapped_column(JSON, default=list)  # the targets, as the author chose them
    summary: Mapped[str] = mapped_column(String(200), default="")
    submitted_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    comment: Mapped[str | None] = mapped_column(String(500), default=None)
