"""Broadcasts: validate a request, resolve its speakers, record deliveries and audit, then send the command."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, literal, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import PRIORITIES, TERMINAL_STATES, Broadcast, Clip, Delivery, Region, Speaker, User
from broadcast.services import approvals, audit, clips, regions
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
# What a reader sees of the broadcast itself, with its clip's fields (None when the clip is gone).
VIEW_COLUMNS = select(
    Broadcast.id,
    Broadcast.status,
    Broadcast.clip_id,
    Broadcast.priority,
    Broadcast.volume,
    Broadcast.repeat,
    Broadcast.targets,
    Broadcast.start_at,
    Broadcast.expires_at,
    Broadcast.created_at,
    Broadcast.created_by,
    Clip.id.label("clip_found"),
    Clip.duration_ms,
    Clip.sha256,
    Clip.title,
).outerjoin(Clip, Clip.id == Broadcast.clip_id)
# The read path's statements are built once: a statement object used again skips SQLAlchemy's construction,
# cache-key and result-adaptation work, most of what a small Core read costs in Python.
VIEW_ONE = VIEW_COLUMNS.where(Broadcast.id == bindparam("ident"))
DELIVERIES_OF = DELIVERY_COLUMNS.where(Delivery.broadcast_id == bindparam("ident"))
TARGET_NAMES = select(Region.code, Region.name).where(Region.code.in_(bindparam("codes", expanding=True)))
PARENTS = select(Region.code, Region.parent_code)  # the chain up is all `regions.within` reads
GRID_OF = select(Speaker.grid_code).where(Speaker.id == bindparam("speaker_id"))


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
    resolution = regions.resolve_targets(session, targets if isinstance(targets, list) else [], user, ids=False)
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
    reached = _insert_deliveries(session, item.id, resolution, "held" if held else "queued")
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
        speakers=reached,
        start_at=start,
        source=source,
    )
    if held:  # approvals hook: recorded, but no command until an approver says yes
        title = clip.title or f"节目 {clip.id}"
        approvals.submit(session, user, "broadcast", item.id, resolution.targets, title, address=address)
    session.flush()
    return item


def _insert_deliveries(session: Session, broadcast_id: int, resolution: regions.Resolution, state: str) -> int:
    """One delivery per reached speaker, in speaker-id order, by one INSERT ... SELECT; returns how many.

    The database picks the speakers and writes the rows itself: loading a county's 10,000+ ids into Python and
    sending them back row by row cost most of the time before an alert's tone could be published.
    """
    chosen = select(literal(broadcast_id), Speaker.id, literal(state)).where(resolution.speakers()).order_by(Speaker.id)
    statement = insert(Delivery).from_select(["broadcast_id", "speaker_id", "state"], chosen)
    # An INSERT's count is kept only when asked for (through psycopg it is otherwise -1).
    return int(session.execute(statement.execution_options(preserve_rowcount=True)).rowcount)


@dataclass(frozen=True)
class Caller:
    """Who reads, as plain values (a token's cached principal): enough to scope a read without the ORM user."""

    id: int
    role: str
    region_code: str | None


def _ident(broadcast_id: object) -> int:
    try:
        return int(str(broadcast_id))
    except ValueError:
        raise not_found("播发任务", "Broadcast", broadcast_id) from None


def get(session: Session, broadcast_id: object, user: User) -> Broadcast:
    """A broadcast the user may see, or a not-found error (never a hint that it exists elsewhere)."""
    item = session.get(Broadcast, _ident(broadcast_id))
    if item is None or not visible(session, item, user):
        raise not_found("播发任务", "Broadcast", broadcast_id)
    return item


def visible(session: Session, item: Any, user: User | Caller, tree: dict[str, Any] | None = None) -> bool:
    """True when every target of the broadcast lies inside the user's region (`tree`: the loaded regions).

    `item` is a Broadcast or a row with its `created_by` and `targets`.
    """
    scope = regions.user_scope(user)  # type: ignore[arg-type]
    if scope is None or item.created_by == user.id:
        return True
    connection = session.connection()
    tree = {r.code: r for r in connection.execute(PARENTS)} if tree is None else tree
    for target in item.targets:
        code = target if target in tree else connection.scalar(GRID_OF, {"speaker_id": target})
        if code is None or not regions.within(tree, code, scope):
            return False
    return True


def counts(session: Session, broadcast_id: int) -> dict[str, int]:
    """Number of deliveries in each state."""
    rows = session.execute(
        select(Delivery.state, func.count()).where(Delivery.broadcast_id == broadcast_id).group_by(Delivery.state)
    )
    return dict(rows.tuples().all())


def rolled_up(status: str, start_at: float, tally: dict[str, int], now: float) -> str:
    """A broadcast's status from its deliveries' counts: scheduled, sending, playing, done (or still waiting)."""
    if status == approvals.REJECTED_STATUS or (status == approvals.PENDING_STATUS and tally.get("held")):
        return status  # approvals hook: waiting for (or refused by) an approver, whatever the clock says
    total = sum(tally.values())
    done = sum(n for state, n in tally.items() if state in TERMINAL_STATES)
    if total and done == total:
        return "done"
    if tally.get("playing") or start_at <= now:
        return "playing"
    if start_at > now + 5:
        return "scheduled"
    return "sending"


def refresh_status(
    session: Session, item: Broadcast, now: float | None = None, tally: dict[str, int] | None = None
) -> str:
    """Roll the broadcast's status up from its deliveries and set it on `item` (the caller commits)."""
    now = time.time() if now is None else now
    tally = counts(session, item.id) if tally is None else tally
    status = rolled_up(item.status, item.start_at, tally, now)
    if status != item.status:
        if status == "done":
            # One line per broadcast in the log file: its id, source and how it ended on the speakers.
            summary = ", ".join(f"{k}={v}" for k, v in sorted(tally.items()))
            logger.info("broadcast %s (%s) done: %s", item.id, item.source, summary)
        item.status = status
    return status


def view(session: Session, broadcast_id: object, user: User | Caller, now: float | None = None) -> dict[str, Any]:
    """A broadcast as the API and console show it, its status rolled up from the same read of its deliveries.

    Core rows, never ORM objects (a read that misses the read cache pays for every one): the broadcast with its
    clip, its deliveries and its targets' names, and the regions when a scoped user's right to see it is checked.
    The status is computed for the reader only; the worker is the one that persists it.
    """
    connection = session.connection()
    item = connection.execute(VIEW_ONE, {"ident": _ident(broadcast_id)}).one_or_none()
    if item is None or not visible(session, item, user):
        raise not_found("播发任务", "Broadcast", broadcast_id)
    rows = connection.execute(DELIVERIES_OF, {"ident": item.id})
    keys = tuple(rows.keys())
    deliveries = [dict(zip(keys, row, strict=True)) for row in rows.all()]  # one fetchall, not a fetch a row
    tally = dict(Counter(d["state"] for d in deliveries))  # the rows are read anyway: no second query to count them
    status = rolled_up(item.status, item.start_at, tally, time.time() if now is None else now)
    return describe(session, item, status, tally, deliveries)


def describe(
    session: Session, item: Any, status: str, tally: dict[str, int], deliveries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The API view of a broadcast (`item`: a VIEW_COLUMNS row) with its status, counts and every delivery."""
    names = dict(session.connection().execute(TARGET_NAMES, {"codes": item.targets}).tuples().all())
    return {
        "id": item.id,
        "status": status,
        "clip_id": item.clip_id,
        "clip": None
        if item.clip_found is None
        else {"duration_ms": item.duration_ms, "sha256": item.sha256, "title": item.title},
        "priority": item.priority,
        "volume": item.volume,
        "repeat": item.repeat,
        "targets": [{"id": t, "name": names.get(t, t)} for t in item.targets],
        "start_at": item.start_at,
        "expires_at": item.expires_at,
        "created_at": item.created_at.isoformat(),
        "counts": tally,
        "deliveries": deliveries,
    }
