"""Broadcasts: validate a request, resolve its speakers, record deliveries and audit, then send the command."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import PRIORITIES, TERMINAL_STATES, Broadcast, Clip, Delivery, Region, Speaker, User
from broadcast.services import approvals, audit, bulk, clips, regions
from broadcast.services.quiet_hours import QuietHours

logger = logging.getLogger(__name__)
MAX_AHEAD_S = 366 * 86400
PAST_GRACE_S = 60
# What a reader sees of each delivery: plain rows, since ORM objects for a township's hundreds cost most of a read.
DELIVERY_COLUMNS = select(
    Delivery.speaker_id,
    Delivery.state,
    Delivery.acknowledged_at,
    Delivery.started_at,
    Delivery.finished_at,
    Delivery.reason,
).order_by(Delivery.speaker_id)


@dataclass(frozen=True)
class Rules:
    """Deployment rules a broadcast is checked against (from settings)."""

    quiet_hours: QuietHours
    timezone: ZoneInfo
    start_lead_s: float
    ttl_s: float
    default_volume: int
    max_repeat: int
    approval_required: str = ""  # approvals: roles (role or role@CODE) whose broadcasts wait (先审后播)


def parse_start(value: object, timezone: ZoneInfo, now: float) -> float | None:
    """A start time from ISO 8601 (local time when no offset) or unix seconds; None means now."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        value = "bad"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone)
            return parsed.timestamp()
    raise BroadcastError(
        "invalid_start",
        f"播发时间格式无效：{value!s:.40}（例如 2026-11-23T14:30）",
        f"Invalid start time: {value!s:.40} (e.g. 2026-11-23T14:30)",
    )


def _int_in(value: object, name_zh: str, name_en: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        value = "bad"
    try:
        number = int(str(value))
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise BroadcastError(
            f"invalid_{name_en}",
            f"{name_zh}必须是 {low}-{high} 之间的整数。",
            f"{name_en} must be a whole number from {low} to {high}.",
        )
    return number


def create(
    session: Session,
    user: User,
    rules: Rules,
    *,
    clip_id: object,
    targets: object,
    priority: object = None,
    volume: object = None,
    repeat: object = None,
    start_at: object = None,
    source: str = "api",
    address: str | None = None,
    now: float | None = None,
    lead_s: float | None = None,
) -> Broadcast:
    """Check and record a broadcast with one queued delivery per speaker; the caller commits, then sends.

    `lead_s` replaces the rules' start lead (an alert's attention tone, which every speaker holds already).
    """
    if user.role == "viewer":
        raise forbidden("只读用户不能播发。", "A viewer cannot broadcast.")
    if user.role == "warning_source" and source != "alert":
        # A warning service's token posts CAP alerts; the alert policy decides what plays, never the token itself.
        raise forbidden("预警信息源只能提交预警，不能直接播发。", "A warning source may post alerts, not broadcasts.")
    now = time.time() if now is None else now
    priority = "normal" if priority is None else priority
    if priority not in PRIORITIES:
        raise BroadcastError(
            "invalid_priority",
            f"优先级无效：{priority!s:.20}（可选：emergency、urgent、normal、background）",
            f"Invalid priority: {priority!s:.20} (emergency, urgent, normal or background)",
        )
    if priority == "emergency" and user.role == "village_head":
        raise forbidden("村级用户不能发布应急广播。", "A village head cannot send emergency broadcasts.")
    volume_n = _int_in(volume, "音量", "volume", 0, 100, rules.default_volume)
    repeat_n = _int_in(repeat, "重复次数", "repeat", 1, rules.max_repeat, 1)
    clip = clips.get(session, clip_id, user)
    requested = parse_start(start_at, rules.timezone, now)
    if requested is not None and requested < now - PAST_GRACE_S:
        raise BroadcastError("start_in_past", "播发时间已经过去。", "The start time is in the past.")
    if requested is not None and requested > now + MAX_AHEAD_S:
        raise BroadcastError("start_too_far", "播发时间不能超过一年以后。", "The start time is more than a year ahead.")
    start = max(requested or 0.0, now + (rules.start_lead_s if lead_s is None else lead_s))
    if priority != "emergency" and rules.quiet_hours.contains(start, rules.timezone):
        raise BroadcastError(
            "quiet_hours",
            f"{rules.quiet_hours} 为静默时段，只允许应急广播。",
            f"{rules.quiet_hours} are quiet hours: only emergencies may play.",
        )
    resolution = regions.resolve_targets(session, targets if isinstance(targets, list) else [], user)
    play_s = clip.duration_ms / 1000 * repeat_n
    # approvals hook: a named role waits for an approver; alerts and emergencies never do
    held = source != "alert" and approvals.needs_approval(session, user, rules.approval_required, priority)
    item = Broadcast(
        clip_id=clip.id,
        priority=str(priority),
        volume=volume_n,
        repeat=repeat_n,
        targets=resolution.targets,
        wire_targets=resolution.wire_targets,
        start_at=start,
        expires_at=start + rules.ttl_s + play_s,
        status=approvals.PENDING_STATUS if held else "sending",
        source=source,
        created_by=user.id,
    )
    session.add(item)
    session.flush()
    # One bulk insert (a COPY on PostgreSQL): ORM objects, or psycopg's executemany of one statement per row,
    # would cost a county's 10,000+ deliveries most of a second before the publish.
    state = "held" if held else "queued"
    rows = [{"broadcast_id": item.id, "speaker_id": sid, "state": state} for sid in resolution.reached]
    bulk.insert_rows(session, Delivery, rows)
    audit.record(
        session,
        user.username,
        "broadcast.create",
        object_type="broadcast",
        object_id=item.id,
        regions=resolution.targets,
        address=address,
        clip_id=clip.id,
        sha256=clip.sha256,
        priority=item.priority,
        speakers=len(resolution.reached),
        start_at=start,
        source=source,
    )
    if held:  # approvals hook: recorded, but no command until an approver says yes
        title = clip.title or f"节目 {clip.id}"
        approvals.submit(session, user, "broadcast", item.id, resolution.targets, title, address=address)
    session.flush()
    return item


def get(session: Session, broadcast_id: object, user: User) -> Broadcast:
    """A broadcast the user may see, or a not-found error (never a hint that it exists elsewhere)."""
    try:
        ident = int(str(broadcast_id))
    except ValueError:
        raise not_found("播发任务", "Broadcast", broadcast_id) from None
    item = session.get(Broadcast, ident)
    if item is None or not visible(session, item, user):
        raise not_found("播发任务", "Broadcast", broadcast_id)
    return item


def visible(session: Session, item: Broadcast, user: User, tree: dict[str, Region] | None = None) -> bool:
    """True when every target of the broadcast lies inside the user's region (`tree`: the loaded regions)."""
    scope = regions.user_scope(user)
    if scope is None or item.created_by == user.id:
        return True
    tree = regions.load_tree(session) if tree is None else tree
    for target in item.targets:
        code = target if target in tree else getattr(session.get(Speaker, target), "grid_code", None)
        if code is None or not regions.within(tree, code, scope):
            return False
    return True


def counts(session: Session, broadcast_id: int) -> dict[str, int]:
    """Number of deliveries in each state."""
    rows = session.execute(
        select(Delivery.state, func.count()).where(Delivery.broadcast_id == broadcast_id).group_by(Delivery.state)
    )
    return dict(rows.tuples().all())


def refresh_status(
    session: Session, item: Broadcast, now: float | None = None, tally: dict[str, int] | None = None
) -> str:
    """Roll the broadcast's status up from its deliveries: scheduled, sending, playing, done (or still waiting)."""
    now = time.time() if now is None else now
    tally = counts(session, item.id) if tally is None else tally
    if item.status == approvals.REJECTED_STATUS or (item.status == approvals.PENDING_STATUS and tally.get("held")):
        return item.status  # approvals hook: waiting for (or refused by) an approver, whatever the clock says
    total = sum(tally.values())
    done = sum(n for state, n in tally.items() if state in TERMINAL_STATES)
    if total and done == total:
        status = "done"
    elif tally.get("playing") or item.start_at <= now:
        status = "playing"
    elif item.start_at > now + 5:
        status = "scheduled"
    else:
        status = "sending"
    if status == "done" and item.status != "done":
        # One line per broadcast in the log file: its id, source and how it ended on the speakers.
        logger.info(
            "broadcast %s (%s) done: %s", item.id, item.source, ", ".join(f"{k}={v}" for k, v in sorted(tally.items()))
        )
    item.status = status
    return status


def view(session: Session, broadcast_id: object, user: User) -> dict[str, Any]:
    """A broadcast as the API and console show it, its status rolled up from the same read of its deliveries.

    The status is computed for the reader only; the worker is the one that persists it.
    """
    item = get(session, broadcast_id, user)
    deliveries = [row._asdict() for row in session.execute(DELIVERY_COLUMNS.where(Delivery.broadcast_id == item.id))]
    tally = dict(Counter(d["state"] for d in deliveries))  # the rows are read anyway: no second query to count them
    refresh_status(session, item, tally=tally)
    return describe(session, item, tally, deliveries)


def describe(
    session: Session, item: Broadcast, tally: dict[str, int], deliveries: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The API view of a broadcast with every delivery (`tally`: its counts by state; `deliveries`: rows read)."""
    if deliveries is None:
        deliveries = [
            row._asdict() for row in session.execute(DELIVERY_COLUMNS.where(Delivery.broadcast_id == item.id))
        ]
    clip = session.get(Clip, item.clip_id)
    tree_names = {r.code: r.name for r in session.scalars(select(Region).where(Region.code.in_(item.targets)))}
    return {
        "id": item.id,
        "status": item.status,
        "clip_id": item.clip_id,
        "clip": {"duration_ms": clip.duration_ms, "sha256": clip.sha256, "title": clip.title} if clip else None,
        "priority": item.priority,
        "volume": item.volume,
        "repeat": item.repeat,
        "targets": [{"id": t, "name": tree_names.get(t, t)} for t in item.targets],
        "start_at": item.start_at,
        "expires_at": item.expires_at,
        "created_at": item.created_at.isoformat(),
        "counts": tally,
        "deliveries": deliveries,
    }
