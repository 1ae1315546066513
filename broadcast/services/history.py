"""What the console lists: recent broadcasts with sender and counts, and what each speaker is playing now."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcast.models import Broadcast, Clip, Delivery, User
from broadcast.services import broadcasts, regions

logger = logging.getLogger(__name__)

FAILED_STATES = ("failed", "missed", "rejected")
SOURCE_LABELS = {"console": "控制台", "api": "接口", "cli": "命令行", "schedule": "定时计划", "alert": "预警"}


@dataclass(frozen=True)
class HistoryRow:
    """One line of 播发记录: the broadcast, its clip, who sent it and its deliveries counted by state."""

    broadcast: Broadcast
    clip: Clip | None
    sender: str
    counts: dict[str, int]

    @property
    def label(self) -> str:
        """What the broadcast played, in words."""
        return clip_label(self.clip)

    @property
    def total(self) -> int:
        """Deliveries of the broadcast."""
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Deliveries played to the end."""
        return self.counts.get("finished", 0)

    @property
    def failed(self) -> int:
        """Deliveries that failed, were missed or refused."""
        return sum(self.counts.get(state, 0) for state in FAILED_STATES)


def clip_label(clip: Clip | None) -> str:
    """What a clip is called in lists: its title, else its text, else what kind of recording it is."""
    if clip is None:
        return ""
    if clip.title:
        return clip.title
    if clip.text:
        return clip.text
    return f"{'现场录音' if clip.source == 'recording' else '上传录音'} #{clip.id}"


def recent(session: Session, user: User, limit: int = 50) -> list[HistoryRow]:
    """The latest broadcasts the user may see, newest first, each with its sender and delivery counts."""
    tree = regions.load_tree(session)
    candidates = session.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(limit * 2))
    items = [b for b in candidates if broadcasts.visible(session, b, user, tree)][:limit]
    ids = [b.id for b in items]
    tally: dict[int, dict[str, int]] = {i: {} for i in ids}
    if ids:
        rows = session.execute(
            select(Delivery.broadcast_id, Delivery.state, func.count())
            .where(Delivery.broadcast_id.in_(ids))
            .group_by(Delivery.broadcast_id, Delivery.state)
        )
        for broadcast_id, state, n in rows.tuples():
            tally[broadcast_id][state] = n
    clip_ids = {b.clip_id for b in items}
    clips = {c.id: c for c in session.scalars(select(Clip).where(Clip.id.in_(clip_ids)))} if clip_ids else {}
    user_ids = {b.created_by for b in items if b.created_by is not None}
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    return [HistoryRow(b, clips.get(b.clip_id), sender_of(b, users.get(b.created_by or 0)), tally[b.id]) for b in items]


def sender_of(item: Broadcast, user: User | None) -> str:
    """Who sent a broadcast: the person's name, or the schedule or alert that made it."""
    if user is not None:
        return user.display_name or user.username
    return SOURCE_LABELS.get(item.source, item.source)


def now_playing(session: Session) -> dict[str, int]:
    """Speaker id -> the broadcast it is playing now, from the deliveries (a finished play shows nothing).

    A speaker's own state message can lag behind its receipts by a heartbeat; the delivery states cannot.
    """
    rows = session.execute(
        select(Delivery.speaker_id, func.max(Delivery.broadcast_id))
        .where(Delivery.state == "playing")
        .group_by(Delivery.speaker_id)
    )
    return dict(rows.tuples().all())
