"""Schedules (定时计划): check and store them, show them with their next plays and history, pause, edit, delete."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import (
    PRIORITIES,
    TERMINAL_STATES,
    Broadcast,
    Delivery,
    Playlist,
    Schedule,
    ScheduleRun,
    Speaker,
    User,
)
from broadcast.services import approvals, audit, broadcasts, clips, regions, schedule_checks
from broadcast.services.broadcasts import Rules
from schedules import Recurrence, ScheduleError, build, next_occurrences
from schedules.summary import summary

logger = logging.getLogger(__name__)
NEXT_SHOWN = 10
HISTORY_SHOWN = 100
EDIT_FIELDS = ("clip_id", "playlist_id", "targets", "rrule", "cron", "dtstart", "timezone", "until", "count")
EDIT_FIELDS += ("exdates", "priority", "volume", "title", "grace_s")


@dataclass(frozen=True)
class Limits:
    """Deployment limits a schedule is checked against (from settings)."""

    max_per_day: int = 48
    grace_s: float = 300.0


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def recurrence_of(item: Schedule) -> Recurrence:
    """The stored schedule's recurrence (fields were checked when it was saved)."""
    exdates = frozenset(datetime.fromisoformat(v) if "T" in v else date.fromisoformat(v) for v in item.exdates or [])
    return Recurrence(
        dtstart=datetime.fromisoformat(item.dtstart),
        timezone=item.timezone,
        rule=item.rule,
        cron=item.cron,
        until=datetime.fromisoformat(item.until) if item.until else None,
        count=item.count,
        exdates=exdates,
    )


def _content(session: Session, user: User, clip_id: object, playlist_id: object) -> tuple[int | None, int | None]:
    if (clip_id is None) == (playlist_id is None):
        raise BroadcastError(
            "content_required", "请选择一个音频或一个节目单（二选一）。", "Give either clip_id or playlist_id."
        )
    if clip_id is not None:
        clip = clips.get(session, clip_id, user)
        if clip.retired_at is not None:
            raise BroadcastError("clip_retired", "该音频已停用。", "That clip is retired.")
        return clip.id, None
    try:
        playlist = session.get(Playlist, int(str(playlist_id)))
    except ValueError:
        playlist = None
    if playlist is None:
        raise not_found("节目单", "Playlist", playlist_id)
    for item in playlist.clip_ids:
        clips.get(session, item, user)
    return None, playlist.id


def _grace(value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise BroadcastError("invalid_grace", "补播宽限必须是 0-86400 秒。", "grace_s must be 0-86400 seconds.")
    return float(value)


def _check(
    session: Session, user: User, rules: Rules, limits: Limits, data: dict[str, Any], now: float, ident: int | None
) -> dict[str, Any]:
    """Validate a schedule body; return the fields to store plus the recurrence and the conflicts."""
    if user.role == "viewer":
        raise forbidden("只读用户不能设置定时计划。", "A viewer cannot schedule broadcasts.")
    priority = data.get("priority") or "normal"
    if priority not in PRIORITIES:
        raise BroadcastError(
            "invalid_priority",
            f"优先级无效：{priority!s:.20}（可选：emergency、urgent、normal、background）",
            f"Invalid priority: {priority!s:.20} (emergency, urgent, normal or background)",
        )
    if priority == "emergency" and user.role == "village_head":
        raise forbidden("村级用户不能设置应急广播。", "A village head cannot schedule emergency broadcasts.")
    volume = data.get("volume")
    if volume is not None and (isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100):
        raise BroadcastError("invalid_volume", "音量必须是 0-100 之间的整数。", "volume must be a whole number 0-100.")
    title = data.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > 200):
        raise BroadcastError("invalid_title", "标题最长 200 字。", "title is at most 200 characters.")
    clip_id, playlist_id = _content(session, user, data.get("clip_id"), data.get("playlist_id"))
    resolution = regions.resolve_targets(
        session, data.get("targets") if isinstance(data.get("targets"), list) else [], user
    )
    rec = build(
        dtstart=data.get("dtstart"),
        timezone=data.get("timezone") or "Asia/Shanghai",
        rrule_text=data.get("rrule"),
        cron=data.get("cron"),
        until=data.get("until"),
        count=data.get("count"),
        exdates=data.get("exdates"),
        max_per_day=limits.max_per_day,
    )
    moment = datetime.fromtimestamp(now, UTC)
    if not next_occurrences(rec, moment, 1):
        raise ScheduleError(
            "schedule.all_in_past", "按此规则不会再播放（所有时间都已过去）。", "Every occurrence is in the past."
        )
    schedule_checks.check_quiet_hours(rec, rules, str(priority), moment)
    found = schedule_checks.overlaps(
        session,
        rec,
        schedule_id=ident,
        targets=resolution.targets,
        priority=str(priority),
        clip_id=clip_id,
        playlist_id=playlist_id,
        now=moment,
        recurrence_of=recurrence_of,
    )
    fields = {
        "title": title,
        "clip_id": clip_id,
        "playlist_id": playlist_id,
        "targets": resolution.targets,
        "priority": str(priority),
        "volume": volume,
        "rule": rec.rule,
        "cron": rec.cron,
        "dtstart": rec.dtstart.isoformat(),
        "timezone": rec.timezone,
        "until": _iso(rec.until),
        "count": rec.count,
        "exdates": sorted(v.isoformat() for v in rec.exdates),
        "grace_s": _grace(data.get("grace_s"), limits.grace_s),
    }
    return {"fields": fields, "recurrence": rec, "conflicts": found}


def preview(
    session: Session,
    user: User,
    rules: Rules,
    limits: Limits,
    data: dict[str, Any],
    schedule_id: int | None = None,
    *,
    language: str = "zh",
) -> dict[str, Any]:
    """What saving would show (summary, next plays, overlaps) without saving anything.

    With `schedule_id` (an edit), that schedule is not counted as overlapping itself; the summary is in
    `language` ("en" or Chinese).
    """
    now = time.time()
    checked = _check(session, user, rules, limits, data, now, schedule_id)
    return _shown(checked["recurrence"], now, language) | {"conflicts": checked["conflicts"]}


def _shown(rec: Recurrence, now: float, language: str) -> dict[str, Any]:
    moment = datetime.fromtimestamp(now, UTC)
    return {
        "summary": summary(rec, language),
        "next_occurrences": [t.isoformat() for t in next_occurrences(rec, moment, NEXT_SHOWN)],
    }


def create(
    session: Session,
    user: User,
    rules: Rules,
    limits: Limits,
    data: dict[str, Any],
    *,
    address: str | None = None,
    now: float | None = None,
) -> tuple[Schedule, list[dict[str, Any]]]:
    """Check and store a schedule (the worker turns its occurrences into broadcasts); returns it and its overlaps."""
    now = time.time() if now is None else now
    checked = _check(session, user, rules, limits, data, now, None)
    item = Schedule(**checked["fields"], state="active", version=1, created_by=user.id, materialized_until=now)
    session.add(item)
    session.flush()
    audit.record(
        session,
        user.username,
        "schedule.create",
        object_type="schedule",
        object_id=item.id,
        regions=item.targets,
        address=address,
        rule=item.rule,
        cron=item.cron,
        dtstart=item.dtstart,
        timezone=item.timezone,
        priority=item.priority,
    )
    approvals.hold_schedule(session, user, rules, item, address=address)  # approvals hook: saved paused, queued
    return item, checked["conflicts"]


def visible(session: Session, item: Schedule, user: User, tree: dict[str, Any] | None = None) -> bool:
    """True when every target lies inside the user's region (or the user made it)."""
    scope = regions.user_scope(user)
    if scope is None or item.created_by == user.id:
        return True
    tree = regions.load_tree(session) if tree is None else tree
    for target in item.targets:
        code = target if target in tree else getattr(session.get(Speaker, target), "grid_code", None)
        if code is None or not regions.within(tree, code, scope):
            return False
    return True


def get(session: Session, schedule_id: object, user: User) -> Schedule:
    """A schedule the user may see (deleted ones stay visible for their history), or not-found."""
    try:
        ident = int(str(schedule_id))
    except ValueError:
        raise not_found("定时计划", "Schedule", schedule_id) from None
    item = session.get(Schedule, ident)
    if item is None or not visible(session, item, user):
        raise not_found("定时计划", "Schedule", schedule_id)
    return item


def list_for(session: Session, user: User, *, include_deleted: bool = False) -> list[Schedule]:
    """Schedules the user may see, newest first."""
    query = select(Schedule).order_by(Schedule.id.desc())
    if not include_deleted:
        query = query.where(Schedule.state != "deleted")
    tree = regions.load_tree(session)
    return [s for s in session.scalars(query) if visible(session, s, user, tree)]


def history(session: Session, item: Schedule, limit: int = HISTORY_SHOWN) -> list[dict[str, Any]]:
    """Per occurrence, newest first: time, broadcast id, state, and delivery counts (aired, missed, preempted)."""
    runs = session.scalars(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == item.id)
        .order_by(ScheduleRun.occurrence_at.desc())
        .limit(limit)
    ).all()
    tz = recurrence_of(item).tz
    shown = []
    for run in runs:
        tally = broadcasts.counts(session, run.broadcast_id) if run.broadcast_id else {}
        shown.append(
            {
                "at": datetime.fromtimestamp(run.occurrence_at, tz).isoformat(),
                "broadcast_id": run.broadcast_id,
                "clip_id": run.clip_id,
                "state": run.state,
                "reason": run.reason,
                "missed_occurrences": run.missed_count or None,
                "last_missed_at": _iso(datetime.fromtimestamp(run.last_missed_at, tz)) if run.last_missed_at else None,
                "counts": tally,
                "aired": tally.get("finished", 0),
                "missed": tally.get("missed", 0),
                "preempted": tally.get("preempted", 0),
            }
        )
    return shown


def describe(
    session: Session, item: Schedule, *, now: float | None = None, with_history: bool = True, language: str = "zh"
) -> dict[str, Any]:
    """The API view of a schedule: its fields, summary (in `language`), next plays and (optionally) its history."""
    now = time.time() if now is None else now
    rec = recurrence_of(item)
    if item.state == "active":
        shown = _shown(rec, now, language)
    else:
        shown = {"summary": summary(rec, language), "next_occurrences": []}
    body = {
        "id": item.id,
        "title": item.title,
        "clip_id": item.clip_id,
        "playlist_id": item.playlist_id,
        "targets": item.targets,
        "priority": item.priority,
        "volume": item.volume,
        "rrule": item.rule,
        "cron": item.cron,
        "dtstart": item.dtstart,
        "timezone": item.timezone,
        "until": item.until,
        "count": item.count,
        "exdates": item.exdates,
        "grace_s": item.grace_s,
        "state": item.state,
        "paused": item.state == "paused",
        "version": item.version,
        "created_by": item.created_by,
        "created_at": item.created_at.isoformat(),
        **shown,
    }
    if with_history:
        body["history"] = history(session, item)
    return body


def cancel_future(session: Session, item: Schedule, now: float, reason: str) -> list[Broadcast]:
    """Cancel every occurrence not yet started: its run is cancelled and its deliveries end (failed: reason).

    Returns the broadcasts cancelled; the caller sends them a Stop so speakers drop them at once.
    """
    runs = session.scalars(
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == item.id, ScheduleRun.state.in_(("scheduled", "sent")))
        .with_for_update()
    ).all()
    cancelled: list[Broadcast] = []
    for run in runs:
        target = session.get(Broadcast, run.broadcast_id) if run.broadcast_id else None
        if target is not None and target.start_at <= now:
            continue  # already playing: a person stops it with the broadcast's own Stop
        run.state = "cancelled"
        run.reason = reason
        if target is not None:
            end_deliveries(session, target.id, reason)
            cancelled.append(target)
    item.materialized_until = now  # occurrences from now on are made again, from the rule as it is now
    item.version += 1
    return cancelled


def end_deliveries(session: Session, broadcast_id: int, reason: str) -> None:
    """Every delivery of a broadcast not in a final state ends as failed with the reason (cancelled, stopped)."""
    session.execute(
        update(Delivery)
        .where(Delivery.broadcast_id == broadcast_id, Delivery.state.not_in(TERMINAL_STATES))
        .values(state="failed", reason=reason)
    )
