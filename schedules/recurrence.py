"""Recurrence rules (RFC 5545 RRULE via python-dateutil, or cron via croniter) and their occurrences."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from dateutil.rrule import rrule, rrulestr

from schedules.errors import ScheduleError

logger = logging.getLogger(__name__)
DEFAULT_TIMEZONE = "Asia/Shanghai"
FIRST_WITHIN = timedelta(days=8 * 366)  # a rule must fire within this of its start (29 February does)


def zone(name: object) -> ZoneInfo:
    """The IANA time zone of that name, or a clear error."""
    if not isinstance(name, str) or not name.strip():
        name = ""
    try:
        return ZoneInfo(str(name).strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "schedule.unknown_timezone",
            f"时区不存在：{name!s:.60}（例如 Asia/Shanghai）",
            f"Unknown time zone: {name!s:.60} (e.g. Asia/Shanghai)",
        ) from None


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """An aware time for a local wall-clock time; a time skipped by a DST change moves forward past the gap."""
    aware = wall.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz)


def to_wall(when: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an aware (or already local naive) time."""
    return when.astimezone(tz).replace(tzinfo=None) if when.tzinfo else when


def _rule_parts(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in text.strip().removeprefix("RRULE:").split(";"):
        if not chunk.strip():
            continue
        key, sep, value = chunk.partition("=")
        if not sep:
            raise _bad_rrule(text)
        parts[key.strip().upper()] = value.strip().upper()
    return parts


def _bad_rrule(text: str) -> ScheduleError:
    return ScheduleError(
        "schedule.invalid_rrule",
        f"重复规则无效：{text!s:.80}（例如 FREQ=WEEKLY;BYDAY=MO,WE,FR）",
        f"Invalid recurrence rule: {text!s:.80} (e.g. FREQ=WEEKLY;BYDAY=MO,WE,FR)",
    )


@dataclass(frozen=True)
class Recurrence:
    """When a schedule plays: a start (local wall time in `timezone`) and a rule, an end, and skipped dates.

    `rule` is an RRULE without UNTIL/COUNT (those are `until`/`count`), `cron` a five-field cron expression;
    neither means once, at `dtstart`. `exdates` holds local dates (a holiday: skip the whole day) and local
    datetimes (one cancelled occurrence). Occurrences are computed in wall-clock time and then placed in the
    zone, so 07:30 stays 07:30 across a DST change.
    """

    dtstart: datetime
    timezone: str = DEFAULT_TIMEZONE
    rule: str | None = None
    cron: str | None = None
    until: datetime | None = None
    count: int | None = None
    exdates: frozenset[date | datetime] = field(default_factory=frozenset)

    @property
    def kind(self) -> str:
        """once, rrule or cron."""
        return "cron" if self.cron else "rrule" if self.rule else "once"

    @property
    def tz(self) -> ZoneInfo:
        """The schedule's time zone."""
        return zone(self.timezone)

    @property
    def freq(self) -> str | None:
        """The RRULE frequency (DAILY, WEEKLY, ...), None for cron and once."""
        return _rule_parts(self.rule).get("FREQ") if self.rule else None

    @cached_property
    def _rrule(self) -> rrule | None:
        if not self.rule:
            return None
        try:
            parsed = rrulestr(self.rule, dtstart=self.dtstart)
        except (ValueError, TypeError):
            raise _bad_rrule(self.rule) from None
        if not isinstance(parsed, rrule):
            raise _bad_rrule(self.rule)
        return parsed

    def _skipped(self, wall: datetime) -> bool:
        return wall.date() in self.exdates or wall in self.exdates

    def _walls(self, stop: datetime) -> Iterator[datetime]:
        """Every wall-clock occurrence from dtstart up to `stop` (exclusive), before skips, within until/count."""
        limit = min(stop, self.until + timedelta(seconds=1)) if self.until else stop
        source: Iterable[datetime]
        if self.cron:
            source = _cron_walls(self.cron, self.dtstart)
        elif self._rrule is not None:
            source = self._rrule
        else:
            source = [self.dtstart]
        for emitted, wall in enumerate(source):
            if wall >= limit or (self.count is not None and emitted >= self.count):
                return
            yield wall

    def indexed(self, after: datetime, before: datetime) -> list[tuple[int, datetime]]:
        """(index, aware time) of each occurrence with after <= time < before; the index counts played-or-due
        occurrences from the first one (skipped dates do not count), as a playlist advances."""
        tz = self.tz
        # Wall-clock bounds with a day of slack either side: a DST change moves the mapping by an hour or so.
        stop = to_wall(before, tz) + timedelta(days=1)
        found: list[tuple[int, datetime]] = []
        index = 0
        for wall in self._walls(stop):
            if self._skipped(wall):
                continue
            when = localize(wall, tz)
            if after <= when < before:
                found.append((index, when))
            index += 1
        return found


def _cron_walls(expression: str, start: datetime) -> Iterator[datetime]:
    # croniter on naive datetimes walks wall-clock time: no DST surprises; the zone is applied afterwards.
    walker = croniter(expression, start - timedelta(seconds=1))
    while True:
        try:
            yield walker.get_next(datetime)
        except CroniterBadDateError:
            return


def occurrences(rec: Recurrence, after: datetime, before: datetime) -> list[datetime]:
    """Aware occurrence times (in the schedule's zone) with after <= time < before."""
    return [when for _, when in rec.indexed(after, before)]


def next_occurrences(rec: Recurrence, now: datetime, n: int = 5, *, within: timedelta | None = None) -> list[datetime]:
    """The next `n` occurrences at or after `now` (searched up to `within` ahead, by default years)."""
    horizon = now + (within or FIRST_WITHIN)
    found: list[datetime] = []
    tz = rec.tz
    for wall in rec._walls(to_wall(horizon, tz) + timedelta(days=1)):
        if rec._skipped(wall):
            continue
        when = localize(wall, tz)
        if when >= horizon:
            break
        if when >= now:
            found.append(when)
            if len(found) >= n:
                break
    return found


def can_end(rec: Recurrence) -> bool:
    """False for a rule that runs for ever (no until, no count, not once): it needs no search for its end."""
    return rec.kind == "once" or rec.until is not None or rec.count is not None


def total(rec: Recurrence) -> int | None:
    """How many times a finite schedule plays in all (skips excluded); None when it never ends."""
    if rec.kind == "once":
        return 0 if rec._skipped(rec.dtstart) else 1
    if rec.until is None and rec.count is None:
        return None
    far = rec.until + timedelta(days=1) if rec.until else datetime.max - timedelta(days=2)
    return sum(1 for wall in rec._walls(far) if not rec._skipped(wall))


def with_exdate(rec: Recurrence, skip: date | datetime) -> Recurrence:
    """The same recurrence with one more skipped date or cancelled occurrence (local wall time)."""
    return replace(rec, exdates=rec.exdates | {skip})
