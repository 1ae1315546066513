"""Scheduling rules (定时计划): recurrences, occurrences, summaries, conflicts and misfire policy; no Flask, no DB."""

from schedules.conflicts import Overlap, Slot, conflicts, resolve
from schedules.errors import ScheduleError
from schedules.forms import choice_for, rrule_for
from schedules.policy import (
    DEFAULT_GRACE_S,
    MissRun,
    coalesce_misses,
    in_window,
    item_for,
    misfire_decision,
    quiet_hits,
    window_text,
)
from schedules.recurrence import (
    DEFAULT_TIMEZONE,
    Recurrence,
    can_end,
    localize,
    next_occurrences,
    occurrences,
    to_wall,
    total,
    with_exdate,
    zone,
)
from schedules.rules import DEFAULT_MAX_PER_DAY, build, check
from schedules.summary import summary_zh

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_MAX_PER_DAY",
    "DEFAULT_TIMEZONE",
    "MissRun",
    "Overlap",
    "Recurrence",
    "ScheduleError",
    "Slot",
    "build",
    "can_end",
    "check",
    "choice_for",
    "coalesce_misses",
    "conflicts",
    "in_window",
    "item_for",
    "localize",
    "misfire_decision",
    "next_occurrences",
    "occurrences",
    "quiet_hits",
    "resolve",
    "rrule_for",
    "summary_zh",
    "to_wall",
    "total",
    "window_text",
    "with_exdate",
    "zone",
]
