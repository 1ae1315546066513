"""Simple form choices (once, daily, workdays, weekly days, every N weeks, monthly) turned into an RRULE."""

from __future__ import annotations

from schedules.errors import ScheduleError

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
KINDS = ("once", "daily", "workdays", "weekly", "monthly_day", "monthly_weekday")


def _bad(what_zh: str, what_en: str) -> ScheduleError:
    return ScheduleError("schedule.invalid_choice", f"{what_zh}无效。", f"Invalid {what_en}.")


def rrule_for(
    kind: str,
    *,
    days: list[int] | None = None,
    interval: int = 1,
    monthday: int | None = None,
    nth: int | None = None,
    weekday: int | None = None,
) -> str | None:
    """The RRULE for a form choice (None for once). Weekdays are 0=Monday ... 6=Sunday.

    daily (every `interval` days), workdays (Monday-Friday), weekly (`days`, every `interval` weeks),
    monthly_day (`monthday`, -1 = the last day), monthly_weekday (`nth` 1-4 or -1 = last, `weekday`).
    """
    if kind not in KINDS:
        raise _bad(f"重复方式 {kind!s:.20} ", f"repeat kind {kind!s:.20}")
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 52:
        raise _bad("间隔（1-52）", "interval (1-52)")
    every = f";INTERVAL={interval}" if interval > 1 else ""
    if kind == "once":
        return None
    if kind == "daily":
        return f"FREQ=DAILY{every}"
    if kind == "workdays":
        return "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    if kind == "weekly":
        chosen = sorted(set(days or []))
        if not chosen or not all(isinstance(d, int) and 0 <= d <= 6 for d in chosen):
            raise _bad("星期（请至少选一天）", "weekdays (choose at least one)")
        return f"FREQ=WEEKLY{every};BYDAY={','.join(WEEKDAYS[d] for d in chosen)}"
    if kind == "monthly_day":
        if not isinstance(monthday, int) or not (1 <= monthday <= 31 or monthday == -1):
            raise _bad("每月日期（1-31 或最后一天）", "day of month (1-31 or -1 for the last)")
        return f"FREQ=MONTHLY{every};BYMONTHDAY={monthday}"
    if not isinstance(nth, int) or nth not in (1, 2, 3, 4, -1):
        raise _bad("第几个（1-4 或最后一个）", "week of month (1-4 or -1 for the last)")
    if not isinstance(weekday, int) or not 0 <= weekday <= 6:
        raise _bad("星期", "weekday")
    return f"FREQ=MONTHLY{every};BYDAY={nth:+d}{WEEKDAYS[weekday]}"


def choice_for(rule: str | None, cron: str | None = None) -> dict[str, object] | None:
    """The form choice that makes this RRULE (the inverse of rrule_for), or None when the form cannot say it."""
    if cron:
        return None
    if rule is None:
        return {"kind": "once"}
    parts = dict(p.split("=", 1) for p in rule.split(";") if "=" in p)
    interval = int(parts["INTERVAL"]) if parts.get("INTERVAL", "").isdigit() else 1
    byday = [d for d in parts.get("BYDAY", "").split(",") if d]
    guesses: list[dict[str, object]] = [{"kind": "daily"}, {"kind": "workdays"}]
    if byday and all(d in WEEKDAYS for d in byday):
        guesses.append({"kind": "weekly", "days": [WEEKDAYS.index(d) for d in byday]})
    if parts.get("BYMONTHDAY", "").lstrip("-").isdigit():
        guesses.append({"kind": "monthly_day", "monthday": int(parts["BYMONTHDAY"])})
    if len(byday) == 1 and byday[0][-2:] in WEEKDAYS and byday[0][:-2].lstrip("+-").isdigit():
        guesses.append({"kind": "monthly_weekday", "nth": int(byday[0][:-2]), "weekday": WEEKDAYS.index(byday[0][-2:])})
    for guess in guesses:
        options = {k: v for k, v in guess.items() if k != "kind"}
        try:
            made = rrule_for(str(guess["kind"]), interval=interval, **options)  # type: ignore[arg-type]
        except ScheduleError:
            continue
        if made == rule:
            return guess | {"interval": interval}
    return None
