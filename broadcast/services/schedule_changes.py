"""Changing what is planned: pause, resume, edit or delete a schedule, cancel one occurrence, stop a broadcast.

Every change cancels the occurrences already turned into broadcasts and sends their speakers a Stop at once;
the next snapshot no longer lists them, so a speaker that was offline during the change never plays the old
version once it is back. The worker re-creates the occurrences from the edited rule on its next run.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import Broadcast, Command, Schedule, ScheduleRun, User
from broadcast.services import approvals, audit, broadcasts, commands, schedules
from broadcast.services.broadcasts import Rules
from broadcast.services.schedules import Limits
from schedules import localize, occurrences, to_wall

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
STOP_TTL_S = 3600.0  # a Stop outlives the broadcast it stops by this much, for speakers coming back online


def _editable(session: Session, user: User, schedule_id: object) -> Schedule:
    item = schedules.get(session, schedule_id, user)
    if user.role == "viewer":
        raise forbidden("只读用户不能修改定时计划。", "A viewer cannot change schedules.")
    if item.state == "deleted":
        raise BroadcastError("schedule_deleted", "该定时计划已删除。", "That schedule was deleted.", kind="conflict")
    return item


def issue_stops(session: Session, items: list[Broadcast], now: float) -> list[Command]:
    """Record a signed Stop for each broadcast to its own targets (published after the commit)."""
    return [
        commands.issue(
            session,
            kind="stop",
            body={"broadcast_id": str(item.id)},
            targets=list(item.wire_targets),
            expires_at=max(item.expires_at, now) + STOP_TTL_S,
        )
        for item in items
    ]


def publish(platform: Platform, issued: list[Command]) -> None:
    """Publish committed commands now; if the broker is down the worker republishes them."""
    if not issued:
        return
    try:
        messenger = platform.messenger()
    except Exception as exc:  # the worker's republisher sends them when the broker is back
        logger.warning("broker unavailable, %d stop command(s) wait for the worker: %s", len(issued), exc)
        return
    for command in issued:
        commands.send(platform.db, messenger, command)


def update(
    session: Session,
    user: User,
    rules: Rules,
    limits: Limits,
    schedule_id: object,
    data: dict[str, Any],
    *,
    address: str | None = None,
    now: float | None = None,
) -> tuple[Schedule, list[Command], list[dict[str, Any]]]:
    """Pause/resume (`{"paused": bool}`) and/or edit fields; returns the schedule, Stops to publish, overlaps."""
    now = time.time() if now is None else now
    item = _editable(session, user, schedule_id)
    edits = {k: v for k, v in data.items() if k in schedules.EDIT_FIELDS}
    unknown = sorted(set(data) - set(schedules.EDIT_FIELDS) - {"paused"})
    if unknown or not data:
        raise BroadcastError(
            "invalid_fields",
            f"无法修改的字段：{'、'.join(unknown) or '（空）'}",
            f"Fields that cannot be changed: {', '.join(unknown) or '(none given)'}",
        )
    paused = data.get("paused")
    if paused is not None and not isinstance(paused, bool):
        raise BroadcastError("invalid_paused", "paused 必须是 true 或 false。", "paused must be true or false.")
    found: list[dict[str, Any]] = []
    changes: dict[str, Any] = {}
    if edits:
        current = schedules.describe(session, item, now=now, with_history=False)
        merged = {k: current.get(k) for k in schedules.EDIT_FIELDS} | edits
        if "clip_id" in edits and edits["clip_id"] is not None:
            merged["playlist_id"] = None
        if "playlist_id" in edits and edits["playlist_id"] is not None:
            merged["clip_id"] = None
        checked = schedules._check(session, user, rules, limits, merged, now, item.id)
        changes = {k: v for k, v in checked["fields"].items() if getattr(item, k) != v}
        for key, value in checked["fields"].items():
            setattr(item, key, value)
        if item.state == "ended":
            item.state = "active"  # the new rule has occurrences ahead (checked above)
        found = checked["conflicts"]
    if paused is not None and item.state in ("active", "paused"):
        item.state = "paused" if paused else "active"
    cancelled = schedules.cancel_future(session, item, now, "cancelled:edited" if edits else "cancelled:paused")
    action = "schedule.edit" if edits else ("schedule.pause" if item.state == "paused" else "schedule.resume")
    approvals.hold_schedule(session, user, rules, item, address=address)  # approvals hook: active waits again
    audit.record(
        session,
        user.username,
        action,
        object_type="schedule",
        object_id=item.id,
        regions=item.targets,
        address=address,
        changed=sorted(changes),
        cancelled=[b.id for b in cancelled],
        version=item.version,
    )
    return item, issue_stops(session, cancelled, now), found


def delete(
    session: Session, user: User, schedule_id: object, *, address: str | None = None, now: float | None = None
) -> tuple[Schedule, list[Command]]:
    """Stop a schedule for good (its history stays); its future broadcasts are cancelled."""
    now = time.time() if now is None else now
    item = _editable(session, user, schedule_id)
    cancelled = schedules.cancel_future(session, item, now, "cancelled:deleted")
    item.state = "deleted"
    audit.record(
        session,
        user.username,
        "schedule.delete",
        object_type="schedule",
        object_id=item.id,
        regions=item.targets,
        address=address,
        cancelled=[b.id for b in cancelled],
    )
    return item, issue_stops(session, cancelled, now)


def cancel_occurrence(
    session: Session,
    user: User,
    schedule_id: object,
    at: object,
    *,
    address: str | None = None,
    now: float | None = None,
) -> tuple[Schedule, list[Command]]:
    """Cancel one occurrence (ISO 8601 time as listed in next_occurrences): skipped for good, Stop sent if made."""
    now = time.time() if now is None else now
    item = _editable(session, user, schedule_id)
    rec = schedules.recurrence_of(item)
    try:
        when = datetime.fromisoformat(str(at))
    except ValueError:
        when = None
    wall = to_wall(when, rec.tz).replace(microsecond=0) if when is not None else None
    if wall is None or not occurrences(rec, localize(wall, rec.tz), localize(wall, rec.tz) + timedelta(seconds=1)):
        raise BroadcastError(
            "no_such_occurrence",
            f"该计划在 {at!s:.40} 没有播放。",
            f"The schedule has no occurrence at {at!s:.40}.",
            kind="not_found",
        )
    item.exdates = sorted({*item.exdates, wall.isoformat()})
    item.version += 1
    stamp = localize(wall, rec.tz).timestamp()
    run = session.scalar(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == item.id, ScheduleRun.occurrence_at == stamp)
        .with_for_update()
    )
    cancelled: list[Broadcast] = []
    if run is not None and run.state in ("scheduled", "sent"):
        run.state = "cancelled"
        run.reason = "cancelled:occurrence"
        target = session.get(Broadcast, run.broadcast_id) if run.broadcast_id else None
        if target is not None:
            schedules.end_deliveries(session, target.id, "cancelled:occurrence")
            cancelled.append(target)
    audit.record(
        session,
        user.username,
        "schedule.cancel_occurrence",
        object_type="schedule",
        object_id=item.id,
        regions=item.targets,
        address=address,
        at=wall.isoformat(),
    )
    return item, issue_stops(session, cancelled, now)


def stop_broadcast(
    session: Session, user: User, broadcast_id: object, *, address: str | None = None, now: float | None = None
) -> tuple[Broadcast, list[Command]]:
    """Stop a broadcast now, playing or not (the protocol's Stop); its open deliveries end as stopped."""
    now = time.time() if now is None else now
    item = broadcasts.get(session, broadcast_id, user)
    if user.role == "viewer":
        raise forbidden("只读用户不能停止播发。", "A viewer cannot stop a broadcast.")
    schedules.end_deliveries(session, item.id, "stopped:by_user")
    run = session.scalar(select(ScheduleRun).where(ScheduleRun.broadcast_id == item.id))
    if run is not None and run.state in ("scheduled", "sent"):
        run.state = "cancelled"
        run.reason = "stopped:by_user"
    broadcasts.refresh_status(session, item, now)
    audit.record(
        session,
        user.username,
        "broadcast.stop",
        object_type="broadcast",
        object_id=item.id,
        regions=item.targets,
        address=address,
    )
    return item, issue_stops(session, [item], now)
