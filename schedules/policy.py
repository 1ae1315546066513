"""Running rules: which playlist item an occurrence plays, late occurrences (misfire), quiet hours."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time

from schedules.errors import ScheduleError

logger = logging.getLogger(__name__)
DEFAULT_GRACE_S = 300.0
URGENT_GRACE_S = 1800.0
ROUTINE = frozenset({"normal", "background"})
PLAYLIST_MODES = ("advance", "rotate")


def item_for(occurrence_index: int, n_items: int, mode: str) -> int | None:
    """Which playlist item (0-based) an occurrence plays: `advance` plays each once, in order, then stops
    (None: the series is over); `rotate` starts again from the first."""
    if mode not in PLAYLIST_MODES:
        raise ScheduleError(
            "schedule.invalid_playlist_mode",
            f"播放方式无效：{mode!s:.20}（advance 顺序播完，rotate 循环）",
            f"Invalid playlist mode: {mode!s:.20} (advance or rotate)",
        )
    if n_items <= 0 or occurrence_index < 0:
        return None
    if mode == "rotate":
        return occurrence_index % n_items
    return occurrence_index if occurrence_index < n_items else None


def misfire_decision(
    scheduled_at: float, now: float, grace_s: float = DEFAULT_GRACE_S, *, priority: str = "normal"
) -> str:
    """ "play" or "missed" for a due occurrence: routine content more than `grace_s` late is missed, not played;
    urgent content gets a longer grace (URGENT_GRACE_S, or `grace_s` if that is longer)."""
    allowed = grace_s if priority in ROUTINE else max(grace_s, URGENT_GRACE_S)
    return "missed" if now - scheduled_at > allowed else "play"


@dataclass(frozen=True)
class MissRun:
    """Consecutive missed occurrences of one schedule, recorded once."""

    first: datetime
    last: datetime
    count: int


def coalesce_misses(decisions: Iterable[tuple[datetime, str]]) -> list[MissRun]:
    """Runs of consecutive "missed" occurrences (in time order); any played one ends a run."""
    runs: list[MissRun] = []
    current: list[datetime] = []
    for when, decision in sorted(decisions, key=lambda d: d[0]):
        if decision == "missed":
            current.append(when)
            continue
        if current:
            runs.append(MissRun(current[0], current[-1], len(current)))
            current = []
    if current:
        runs.append(MissRun(current[0], current[-1], len(current)))
    return runs


def in_window(local: time, start: time, end: time) -> bool:
    """True when a local time of day lies in a daily window [start, end), which may cross midnight."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hits(
    occurrences: Iterable[datetime], windows: Iterable[tuple[time, time]], *, priority: str = "normal"
) -> list[tuple[datetime, tuple[time, time]]]:
    """Occurrences (aware, local to the deployment) that start inside a quiet window; emergencies never do."""
    if priority == "emergency":
        return []
    spans = list(windows)
    hits = []
    for when in occurrences:
        for span in spans:
            if in_window(when.time(), *span):
                hits.append((when, span))
                break
    return hits


def window_text(span: tuple[time, time]) -> str:
    """A window as people write it: "22:00-06:00"."""
    return f"{span[0]:%H:%M}-{span[1]:%H:%M}"
