"""Building a checked Recurrence from plain values: parsing, rule limits, never-fires and density checks."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from schedules.errors import ScheduleError
from schedules.recurrence import (
    DEFAULT_TIMEZONE,
    Recurrence,
    _bad_rrule,
    _rule_parts,
    localize,
    next_occurrences,
    to_wall,
    zone,
)

logger = logging.getLogger(__name__)
DEFAULT_MAX_PER_DAY = 48
# Several plays a day are written FREQ=DAILY;BYHOUR=7,12;BYMINUTE=30. Sub-daily frequencies and year-day or
# week-number parts are refused: dateutil walks a rule that never matches up to the year 9999, minute by minute.
FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY")
RULE_KEYS = frozenset({"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYHOUR", "BYMINUTE", "BYSETPOS", "WKST"})
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
DENSITY_SAMPLE_DAYS = 14
UNTIL_FORM = re.compile(r"\d{8}(T\d{6}Z?)?")  # RFC 5545 UNTIL: a DATE or a DATE-TIME


def _parse_wall(value: object, tz: ZoneInfo, what_zh: str, what_en: str) -> datetime:
    if isinstance(value, datetime):
        return to_wall(value, tz).replace(microsecond=0)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, 23, 59, 59)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is not None:
            if len(text) == 10:  # a bare date as an end means the end of that day
                parsed = parsed.replace(hour=23, minute=59, second=59)
            return to_wall(parsed, tz).replace(microsecond=0)
    raise ScheduleError(
        f"schedule.invalid_{what_en}",
        f"{what_zh}格式无效：{value!s:.40}（例如 2026-12-01T07:30）",
        f"Invalid {what_en}: {value!s:.40} (e.g. 2026-12-01T07:30)",
    )


def _parse_exdate(value: object, tz: ZoneInfo) -> date | datetime:
    if isinstance(value, datetime):
        return to_wall(value, tz).replace(microsecond=0)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    return _parse_wall(value, tz, "跳过日期", "exdate")


def build(
    *,
    dtstart: object,
    timezone: object = DEFAULT_TIMEZONE,
    rrule_text: object = None,
    cron: object = None,
    until: object = None,
    count: object = None,
    exdates: object = None,
    max_per_day: int = DEFAULT_MAX_PER_DAY,
) -> Recurrence:
    """A checked Recurrence from plain values (an API body or form choices turned into an RRULE).

    Raises ScheduleError: unknown zone, bad start/end, bad RRULE or cron, both or neither end kinds misused,
    end before start, a rule that never fires, or more than `max_per_day` occurrences on a day.
    """
    tz = zone(timezone or DEFAULT_TIMEZONE)
    start = _parse_wall(dtstart, tz, "开始时间", "dtstart")
    if rrule_text and cron:
        raise ScheduleError(
            "schedule.rule_and_cron", "重复规则和 cron 只能选一种。", "Give either an RRULE or a cron expression."
        )
    rule_text: str | None = None
    end = None if until in (None, "") else _parse_wall(until, tz, "结束时间", "until")
    n = None if count in (None, "") else _count(count)
    if rrule_text:
        if not isinstance(rrule_text, str):
            raise _bad_rrule(str(rrule_text))
        parts = _rule_parts(rrule_text)
        _check_parts(parts, rrule_text)
        if "UNTIL" in parts:
            end_text = parts.pop("UNTIL")
            end = end or _rule_until(end_text, tz, rrule_text)
        if "COUNT" in parts:
            n = n or _count(parts.pop("COUNT"))
        rule_text = ";".join(f"{k}={v}" for k, v in parts.items())
    cron_text: str | None = None
    if cron:
        cron_text = " ".join(str(cron).split())
        if len(cron_text.split()) != 5 or not croniter.is_valid(cron_text):
            raise ScheduleError(
                "schedule.invalid_cron",
                f"cron 表达式无效：{cron_text:.60}（五段：分 时 日 月 周，例如 30 7 * * 1-5）",
                f"Invalid cron expression: {cron_text:.60} (five fields: minute hour day month weekday)",
            )
    if end is not None and n is not None:
        raise ScheduleError(
            "schedule.until_and_count", "结束日期和次数只能选一种。", "Give an end date or a count, not both."
        )
    if end is not None and end < start:
        raise ScheduleError(
            "schedule.end_before_start", "结束时间早于开始时间。", "The end is before the start.", kind="invalid"
        )
    skips = frozenset(_parse_exdate(v, tz) for v in _as_list(exdates))
    rec = Recurrence(dtstart=start, timezone=tz.key, rule=rule_text, cron=cron_text, until=end, count=n, exdates=skips)
    rec._rrule  # noqa: B018 - parse now, so a bad rule fails here
    check(rec, max_per_day=max_per_day)
    return rec


def _numbers(value: str | None, whole: str) -> list[int]:
    if not value:
        return []
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise _bad_rrule(whole) from None


def _check_parts(parts: dict[str, str], whole: str) -> None:
    """Refuse what dateutil would accept but that cannot fire, or that it would walk slowly."""
    unknown = set(parts) - RULE_KEYS - {"UNTIL", "COUNT"}
    if parts.get("FREQ") not in FREQS or unknown:
        raise ScheduleError(
            "schedule.unsupported_rrule",
            f"不支持的重复规则：{whole:.80}（FREQ 只能是 YEARLY、MONTHLY、WEEKLY、DAILY；"
            "一天多次请用 BYHOUR/BYMINUTE）",
            f"Unsupported recurrence rule: {whole:.80} (FREQ YEARLY, MONTHLY, WEEKLY or DAILY; "
            "several plays a day via BYHOUR/BYMINUTE; no BYYEARDAY, BYWEEKNO, BYSECOND)",
        )
    interval = _numbers(parts.get("INTERVAL"), whole) or [1]
    months = _numbers(parts.get("BYMONTH"), whole) or list(range(1, 13))
    days = _numbers(parts.get("BYMONTHDAY"), whole)
    if len(interval) != 1 or not 1 <= interval[0] <= 1000 or not all(1 <= m <= 12 for m in months):
        raise _bad_rrule(whole)
    if days and not any(1 <= abs(d) <= MONTH_DAYS[m - 1] for d in days for m in months):
        raise ScheduleError(
            "schedule.never_fires",
            "按此规则永远不会播放（所选月份没有这一天）。",
            "This rule never fires (the chosen months have no such day).",
        )
    positions = _numbers(parts.get("BYSETPOS"), whole)
    if positions and max(abs(p) for p in positions) > _set_size(parts, whole):
        raise ScheduleError(
            "schedule.never_fires",
            "按此规则永远不会播放（BYSETPOS 超出每个周期的次数）。",
            "This rule never fires (BYSETPOS is beyond the plays of a period).",
        )


def _set_size(parts: dict[str, str], whole: str) -> int:
    """At most how many candidates one period of the rule has (BYSETPOS picks among them)."""
    weekdays = len([d for d in parts.get("BYDAY", "").split(",") if d])
    per_period = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 31, "YEARLY": 366}[parts["FREQ"]]
    weeks = {"DAILY": 1, "WEEKLY": 1, "MONTHLY": 5, "YEARLY": 53}[parts["FREQ"]]
    if weekdays:
        per_period = min(per_period, weekdays * weeks)
    monthdays = _numbers(parts.get("BYMONTHDAY"), whole)
    if monthdays:
        per_period = min(per_period, len(monthdays) * (12 if parts["FREQ"] == "YEARLY" else 1))
    times = len(_numbers(parts.get("BYHOUR"), whole) or [0]) * len(_numbers(parts.get("BYMINUTE"), whole) or [0])
    return per_period * times


def _count(value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if isinstance(value, bool) or not 1 <= number <= 100_000:
        raise ScheduleError(
            "schedule.invalid_count",
            "播放次数必须是 1-100000 的整数。",
            "count must be a whole number from 1 to 100000.",
        )
    return number


def _rule_until(text: str, tz: ZoneInfo, whole: str) -> datetime:
    # RFC 5545 DATE or DATE-TIME only: strptime alone would read 20261209T0730 as 07:03:00.
    if not UNTIL_FORM.fullmatch(text):
        raise _bad_rrule(whole)
    try:
        if text.endswith("Z"):
            return to_wall(datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC), tz)
        if "T" in text:
            return datetime.strptime(text, "%Y%m%dT%H%M%S")
        return datetime.strptime(text, "%Y%m%d").replace(hour=23, minute=59, second=59)
    except ValueError:
        raise _bad_rrule(whole) from None


def _as_list(value: object) -> list[Any]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v for v in value.replace("，", ",").split(",") if v.strip()]
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    raise ScheduleError("schedule.invalid_exdates", "跳过日期必须是日期列表。", "exdates must be a list of dates.")


def check(rec: Recurrence, *, max_per_day: int = DEFAULT_MAX_PER_DAY) -> None:
    """Refuse a rule that never fires or that plays more than `max_per_day` times on some day."""
    tz = rec.tz
    start = localize(rec.dtstart, tz)
    first = next_occurrences(rec, start, 1)
    if not first:
        raise ScheduleError(
            "schedule.never_fires",
            "按此规则永远不会播放（请检查日期、星期、结束时间和跳过日期）。",
            "This rule never fires (check its days, its end and its skipped dates).",
        )
    # Rules repeat, so the busiest day of the first two weeks that play is the busiest day there is.
    per_day: dict[date, int] = {}
    days_seen = 0
    for wall in rec._walls(datetime.max - timedelta(days=2)):
        if rec._skipped(wall):
            continue
        day = wall.date()
        if day not in per_day:
            days_seen += 1
            if days_seen > DENSITY_SAMPLE_DAYS:
                break
        per_day[day] = per_day.get(day, 0) + 1
        if per_day[day] > max_per_day:
            raise ScheduleError(
                "schedule.too_dense",
                f"播放过于频繁：{day:%Y-%m-%d} 一天超过 {max_per_day} 次。",
                f"Too frequent: more than {max_per_day} plays on {day:%Y-%m-%d}.",
                max_per_day=max_per_day,
            )
