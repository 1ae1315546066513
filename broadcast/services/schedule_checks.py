"""Checks a schedule gets before it is saved: quiet hours, and overlaps with other schedules on shared speakers."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, false, func, select, true
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError
from broadcast.models import Clip, Playlist, Region, Schedule, Speaker
from broadcast.services import regions
from broadcast.services.broadcasts import Rules
from schedules import Recurrence, Slot, conflicts, next_occurrences, occurrences, quiet_hits, window_text

logger = logging.getLogger(__name__)
QUIET_CHECK_N = 200  # occurrences looked at for quiet hours (a rule's times repeat)
CONFLICT_HORIZON = timedelta(days=7)
MAX_CONFLICTS_SHOWN = 50
MAX_FILTER_KEYS = 2000  # beyond this many speakers and regions, the overlap check reads every active schedule


def check_quiet_hours(rec: Recurrence, rules: Rules, priority: str, now: datetime) -> None:
    """Refuse a routine schedule with an occurrence inside the deployment's quiet hours, naming the window."""
    quiet = rules.quiet_hours
    if quiet.start is None or quiet.end is None or priority == "emergency":
        return
    start = max(now, rec.dtstart.replace(tzinfo=rec.tz))
    upcoming = [t.astimezone(rules.timezone) for t in next_occurrences(rec, start, QUIET_CHECK_N)]
    hits = quiet_hits(upcoming, [(quiet.start, quiet.end)], priority=priority)
    if hits:
        when, span = hits[0]
        raise BroadcastError(
            "quiet_hours",
            f"{window_text(span)} 为静默时段，只允许应急广播；本计划在 {when:%Y-%m-%d %H:%M} 落在其中。",
            f"{window_text(span)} are quiet hours (emergencies only); this schedule plays at {when:%Y-%m-%d %H:%M}.",
            window=window_text(span),
            at=when.isoformat(),
        )


class SpeakerMap:
    """Which speakers a list of targets reaches, computed from one load of the regions and speakers."""

    def __init__(self, session: Session) -> None:
        self.tree: dict[str, Region] = regions.load_tree(session)
        self.by_grid: dict[str, set[str]] = defaultdict(set)
        self.grid_of: dict[str, str] = {}
        for sid, grid in session.execute(select(Speaker.id, Speaker.grid_code).where(Speaker.enabled.is_(True))):
            self.by_grid[grid].add(sid)
            self.grid_of[sid] = grid
        self.under: dict[str, set[str]] = defaultdict(set)  # region -> grids beneath it (itself for a grid)
        for grid in self.by_grid:
            for code in regions.ancestors(self.tree, grid):
                self.under[code].add(grid)

    def reached(self, targets: list[str]) -> frozenset[str]:
        """Speaker ids reached by region codes and speaker ids."""
        found: set[str] = set()
        for target in targets:
            if target in self.tree:
                for grid in self.under.get(target, ()):
                    found |= self.by_grid[grid]
            elif target in self.grid_of:
                found.add(target)
        return frozenset(found)


def _sharing(session: Session, speakers: SpeakerMap, targets: list[str], mine: frozenset[str]) -> ColumnElement[bool]:
    """Schedules with a target that reaches one of `mine`: filtered by the database, not loaded and checked.

    A schedule shares a speaker with the candidate exactly when one of its targets is one of those speakers
    or a region above (or equal to) one of their grids.
    """
    keys = set(mine)
    for grid in {speakers.grid_of[s] for s in mine if s in speakers.grid_of}:
        keys.update(regions.ancestors(speakers.tree, grid))
    if not keys:
        return false()
    if len(keys) > MAX_FILTER_KEYS:
        return true()  # a county-wide candidate shares speakers with nearly everything: no filter helps
    if session.get_bind().dialect.name == "postgresql":
        values = func.json_array_elements_text(Schedule.targets).table_valued("value")
    else:
        values = func.json_each(Schedule.targets).table_valued("value")
    return exists(select(values.c.value).where(values.c.value.in_(sorted(keys))))


def _duration_s(session: Session, schedule_clip: int | None, playlist: int | None, cache: dict[Any, float]) -> float:
    key = (schedule_clip, playlist)
    if key not in cache:
        ids = [schedule_clip] if schedule_clip else list((session.get(Playlist, playlist) or Playlist()).clip_ids or [])
        durations = session.scalars(select(Clip.duration_ms).where(Clip.id.in_(ids))).all() if ids else []
        cache[key] = max(durations, default=0) / 1000
    return cache[key]


def overlaps(
    session: Session,
    rec: Recurrence,
    *,
    schedule_id: int | None,
    targets: list[str],
    priority: str,
    clip_id: int | None,
    playlist_id: int | None,
    now: datetime,
    recurrence_of: Any,
) -> list[dict[str, Any]]:
    """Overlaps of a schedule's next week with other active schedules, and who plays (the priority ladder)."""
    speakers = SpeakerMap(session)
    start = max(now, rec.dtstart.replace(tzinfo=rec.tz)).astimezone(UTC)
    horizon = (start, start + CONFLICT_HORIZON)
    durations: dict[Any, float] = {}
    mine = speakers.reached(targets)
    me = schedule_id if schedule_id is not None else "new"
    length = _duration_s(session, clip_id, playlist_id, durations)
    candidate = [Slot(me, mine, t, length, priority) for t in occurrences(rec, *horizon)]
    others: list[Slot] = []
    query = select(Schedule).where(Schedule.state == "active", _sharing(session, speakers, targets, mine))
    for other in session.scalars(query.order_by(Schedule.id)):
        if other.id == schedule_id:
            continue
        theirs = speakers.reached(list(other.targets))
        if not theirs & mine:
            continue
        other_length = _duration_s(session, other.clip_id, other.playlist_id, durations)
        others.extend(
            Slot(other.id, theirs, t, other_length, other.priority) for t in occurrences(recurrence_of(other), *horizon)
        )
    found = conflicts(candidate, others, horizon)
    return [
        {
            "at": o.candidate.start.isoformat(),
            "schedule_id": o.other.schedule_id,
            "other_at": o.other.start.isoformat(),
            "speakers": len(o.speakers),
            "winner": o.winner,
            "outcome": o.outcome,
            "message": o.describe_zh(),
            "message_en": o.describe_en(),
        }
        for o in found[:MAX_CONFLICTS_SHOWN]
    ]
