"""Fleet health: which speakers are silent, failing or refusing commands, so a broken one is noticed at once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcast.models import AuditEvent, Delivery, Speaker, User, utcnow
from broadcast.services import regions

FAILED = ("failed", "missed", "rejected")
ENDED = ("finished", "preempted", *FAILED)
KIND_LABELS = {"never_seen": "从未上线", "offline": "离线", "failing": "连续播发失败", "rejecting": "拒绝指令"}


@dataclass(frozen=True)
class Alarm:
    """One speaker that needs a look, and why."""

    speaker_id: str
    name: str
    region_path: str
    kind: str  # never_seen | offline | failing | rejecting
    since: datetime | None
    detail: str


def _last_states(session: Session, n: int) -> dict[str, list[str]]:
    ranked = (
        select(
            Delivery.speaker_id,
            Delivery.state,
            func.row_number().over(partition_by=Delivery.speaker_id, order_by=Delivery.id.desc()).label("rank"),
        )
        .where(Delivery.state.in_(ENDED))
        .subquery()
    )
    out: dict[str, list[str]] = defaultdict(list)
    for speaker_id, state in session.execute(select(ranked.c.speaker_id, ranked.c.state).where(ranked.c.rank <= n)):
        out[speaker_id].append(state)
    return out


def _recent_rejections(session: Session, hours: int) -> dict[str, int]:
    since = utcnow() - timedelta(hours=hours)
    rows = session.execute(
        select(AuditEvent.actor, func.count())
        .where(AuditEvent.action == "speaker.rejected_command", AuditEvent.at >= since)
        .group_by(AuditEvent.actor)
    )
    return {actor.removeprefix("speaker:"): count for actor, count in rows}


def alarms(session: Session, user: User, *, last_plays: int = 3, rejection_hours: int = 24) -> list[Alarm]:
    """Speakers in the user's region that are offline, never seen, failed their last plays, or refused commands."""
    tree = regions.load_tree(session)
    scope = regions.user_scope(user)
    states = _last_states(session, last_plays)
    rejections = _recent_rejections(session, rejection_hours)
    found: list[Alarm] = []
    for speaker in session.scalars(select(Speaker).where(Speaker.enabled.is_(True)).order_by(Speaker.id)):
        if not regions.within(tree, speaker.grid_code, scope):
            continue
        path = " / ".join(tree[c].name for c in reversed(regions.ancestors(tree, speaker.grid_code)))

        def add(kind: str, detail: str, since: datetime | None = None, s: Speaker = speaker, p: str = path) -> None:
            found.append(Alarm(s.id, s.name, p, kind, since, detail))

        if speaker.last_seen is None:
            add("never_seen", "从未上线")
        elif not speaker.online:
            add("offline", "离线", speaker.last_seen)
        recent = states.get(speaker.id, [])
        if len(recent) == last_plays and all(state in FAILED for state in recent):
            add("failing", f"最近 {last_plays} 次播发均未成功")
        if rejections.get(speaker.id):
            add("rejecting", f"{rejection_hours} 小时内拒绝了 {rejections[speaker.id]} 条指令（可能有伪造或重放）")
    return found
