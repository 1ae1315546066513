"""The schedule calendar of a region: each day's occurrences, planned or past, with what happened to them."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.models import ScheduleRun, User
from broadcast.services import schedules
from schedules import occurrences

logger = logging.getLogger(__name__)
VIEWS = {"day": 1, "week": 7, "month": 31}


def window(view: str, start: date | None, today: date) -> tuple[str, date, int]:
    """The view (day, week or month), its first day and its length in days."""
    view = view if view in VIEWS else "week"
    first = start or today
    if view == "week":
        first -= timedelta(days=first.weekday())
    elif view == "month":
        first = first.replace(day=1)
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        return view, first, (following - first).days
    return view, first, VIEWS[view]


def neighbours(view: str, first: date, days: int) -> tuple[date, date]:
    """The first day of the previous and of the next page."""
    if view == "month":
        return (first - timedelta(days=1)).replace(day=1), first + timedelta(days=days)
    return first - timedelta(days=days), first + timedelta(days=days)


def calendar(session: Session, user: User, first: date, days: int, tz: ZoneInfo) -> list[dict[str, Any]]:
    """One entry per day: its date and its occurrences (time, schedule, title, priority, state)."""
    start = datetime.combine(first, datetime.min.time(), tz)
    end = start + timedelta(days=days)
    visible = [s for s in schedules.list_for(session, user) if s.state in ("active", "paused", "ended")]
    runs: dict[tuple[int, float], ScheduleRun] = {}
    if visible:
        query = select(ScheduleRun).where(
            ScheduleRun.schedule_id.in_([s.id for s in visible]),
            ScheduleRun.occurrence_at >= start.timestamp(),
            ScheduleRun.occurrence_at < end.timestamp(),
        )
        for run in session.scalars(query.order_by(ScheduleRun.id)):
            runs[(run.schedule_id, run.occurrence_at)] = run  # the latest version wins
    by_day: dict[date, list[dict[str, Any]]] = {first + timedelta(days=n): [] for n in range(days)}
    for item in visible:
        times = occurrences(schedules.recurrence_of(item), start.astimezone(UTC), end.astimezone(UTC))
        seen = {t.timestamp() for t in times}
        extra = [  # missed runs of an edited rule still show where they were
            datetime.fromtimestamp(at, UTC) for (sid, at) in runs if sid == item.id and at not in seen
        ]
        for when in [*times, *extra]:
            local = when.astimezone(tz)
            run = runs.get((item.id, when.timestamp()))
            state = run.state if run else ("paused" if item.state == "paused" else "planned")
            by_day.setdefault(local.date(), []).append(
                {
                    "time": local.strftime("%H:%M"),
                    "at": local.isoformat(),
                    "schedule_id": item.id,
                    "title": item.title,  # None: the page names it by its number, in its language
                    "priority": item.priority,
                    "state": state,
                    "broadcast_id": run.broadcast_id if run else None,
                }
            )
    return [
        {"date": day, "items": sorted(entries, key=lambda e: (e["time"], e["schedule_id"]))}
        for day, entries in sorted(by_day.items())
        if first <= day < first + timedelta(days=days)
    ]
