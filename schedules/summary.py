"""A one-line summary of a recurrence, shown before saving, in Chinese or English.

For example: "每周一、三、五 07:30，至 2027年6月30日，共 N 次", or in English
"Every Monday, Wednesday and Friday at 07:30, until 30 June 2027, N plays in all".
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime

from schedules.recurrence import DEFAULT_TIMEZONE, Recurrence, _rule_parts, total

logger = logging.getLogger(__name__)
DAY_ZH = {"MO": "一", "TU": "二", "WE": "三", "TH": "四", "FR": "五", "SA": "六", "SU": "日"}
ORDER = list(DAY_ZH)
NTH_ZH = {1: "第一个", 2: "第二个", 3: "第三个", 4: "第四个", 5: "第五个", -1: "最后一个", -2: "倒数第二个"}
NTH_DAY = re.compile(r"^([+-]?\d+)?(MO|TU|WE|TH|FR|SA|SU)$")
DAY_EN = {"MO": "Monday", "TU": "Tuesday", "WE": "Wednesday", "TH": "Thursday", "FR": "Friday"}
DAY_EN |= {"SA": "Saturday", "SU": "Sunday"}
MONTH_EN = ("January", "February", "March", "April", "May", "June", "July")
MONTH_EN += ("August", "September", "October", "November", "December")
NTH_EN = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last", -2: "second-to-last"}


def _date_zh(day: date | datetime) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _weekdays_zh(byday: list[str]) -> str:
    days = sorted(byday, key=ORDER.index)
    if days == ORDER[:5]:
        return "工作日（周一至周五）"
    if days == ORDER:
        return "每天"
    if days == ORDER[5:]:
        return "每周六、日"
    return "每周" + "、".join(DAY_ZH[d] for d in days)


def _times(rec: Recurrence, parts: dict[str, str]) -> list[str]:
    hours = [int(h) for h in parts["BYHOUR"].split(",")] if "BYHOUR" in parts else [rec.dtstart.hour]
    minutes = [int(m) for m in parts["BYMINUTE"].split(",")] if "BYMINUTE" in parts else [rec.dtstart.minute]
    return [f"{h:02d}:{m:02d}" for h in sorted(hours) for m in sorted(minutes)]


def _nth_zh(n: int, unit: str = "个") -> str:
    if unit == "个" and n in NTH_ZH:
        return NTH_ZH[n]
    if n == -1:
        return "最后一" + unit
    return f"第 {n} {unit}" if n > 0 else f"倒数第 {-n} {unit}"


def _setpos_zh(positions: str, days: list[str]) -> str:
    """BYSETPOS picks among the month's matching days: "最后一个工作日", not "最后一个星期一、最后一个星期二..."."""
    picks = [int(p) for p in positions.split(",") if p]
    ordered = sorted(days, key=ORDER.index)
    if ordered == ORDER:
        return "、".join(_nth_zh(n, "天") for n in picks)
    if ordered == ORDER[:5]:
        what = "工作日"
    elif ordered == ORDER[5:]:
        what = "周末日（周六或周日）"
    else:
        what = "或".join(f"星期{DAY_ZH[d]}" for d in ordered)
    return "、".join(_nth_zh(n) for n in picks) + what


def _rule_zh(rec: Recurrence) -> str:
    parts = _rule_parts(rec.rule or "")
    freq = parts.get("FREQ")
    n = int(parts.get("INTERVAL", "1"))
    byday = [d for d in parts.get("BYDAY", "").split(",") if d]
    plain_days = [d for d in byday if d in DAY_ZH]
    times = "、".join(_times(rec, parts))
    months = parts.get("BYMONTH")
    month_zh = "、".join(f"{m}月" for m in months.split(",")) if months else ""
    if freq == "DAILY":
        lead = "每天" if n == 1 else f"每 {n} 天"
        if plain_days and len(plain_days) == len(byday):
            lead = _weekdays_zh(plain_days)
        return f"{month_zh}{lead} {times}"
    if freq == "WEEKLY":
        days = plain_days or [ORDER[rec.dtstart.weekday()]]
        text = _weekdays_zh(days)
        if n > 1:
            text = f"每 {n} 周的" + ("周" + "、".join(DAY_ZH[d] for d in sorted(days, key=ORDER.index)))
        return f"{text} {times}"
    if freq in ("MONTHLY", "YEARLY"):
        lead = ("每月" if n == 1 else f"每 {n} 个月") if freq == "MONTHLY" else ("每年" if n == 1 else f"每 {n} 年")
        if freq == "YEARLY":
            lead += month_zh or f"{rec.dtstart.month}月"
        if "BYMONTHDAY" in parts:
            days_text = "、".join("最后一天" if d == "-1" else f"{d} 日" for d in parts["BYMONTHDAY"].split(","))
            return f"{lead}{days_text} {times}"
        if "BYSETPOS" in parts and plain_days and len(plain_days) == len(byday):
            return f"{lead}{_setpos_zh(parts['BYSETPOS'], plain_days)} {times}"
        matches = [NTH_DAY.match(d) for d in byday]
        if matches and all(matches):
            picks = []
            for m in matches:
                nth = int(m.group(1)) if m.group(1) else int(parts.get("BYSETPOS", "0") or 0)
                picks.append(f"{NTH_ZH.get(nth, f'第 {nth} 个') if nth else '每个'}星期{DAY_ZH[m.group(2)]}")
            return f"{lead}{'、'.join(picks)} {times}"
        return f"{lead}{rec.dtstart.day} 日 {times}"
    return f"自定义规则 {rec.rule} {times}"


def summary_zh(rec: Recurrence) -> str:
    """How a person reads the rule, e.g. "每周一、三、五 07:30，至 2027年6月30日，共 78 次"."""
    if rec.kind == "once":
        text = f"{_date_zh(rec.dtstart)} {rec.dtstart:%H:%M} 播放一次"
    elif rec.kind == "cron":
        text = f"按 cron 表达式「{rec.cron}」"
    else:
        text = _rule_zh(rec)
    if rec.until is not None:
        text += f"，至 {_date_zh(rec.until)}"
    if rec.exdates:
        text += f"，跳过 {len(rec.exdates)} 个日期"
    n = total(rec) if rec.kind != "once" else None
    if n is not None:
        text += f"，共 {n} 次"
    if rec.timezone != DEFAULT_TIMEZONE:
        text += f"（{rec.timezone} 当地时间）"
    return text


def _list_en(words: list[str], last: str = "and") -> str:
    """One word, "a and b", or "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _first_up(text: str) -> str:
    return text[:1].upper() + text[1:]


def _date_en(day: date | datetime) -> str:
    return f"{day.day} {MONTH_EN[day.month - 1]} {day.year}"


def _every_en(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _ordinal_en(n: int) -> str:
    """1 -> "first", -1 -> "last", 7 -> "7th", -3 -> "3rd-to-last"."""
    if n in NTH_EN:
        return NTH_EN[n]
    k = abs(n)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}" + ("-to-last" if n < 0 else "")


def _weekdays_en(byday: list[str]) -> str:
    days = sorted(byday, key=ORDER.index)
    if days == ORDER[:5]:
        return "weekdays (Monday to Friday)"
    if days == ORDER:
        return "every day"
    return "every " + _list_en([DAY_EN[d] for d in days])


def _setpos_en(positions: str, days: list[str]) -> str:
    """BYSETPOS picks among the month's matching days: "the last workday", not "the last Monday, ..."."""
    picks = _list_en([_ordinal_en(int(p)) for p in positions.split(",") if p])
    ordered = sorted(days, key=ORDER.index)
    if ordered == ORDER:
        return f"the {picks} day"
    if ordered == ORDER[:5]:
        return f"the {picks} workday"
    if ordered == ORDER[5:]:
        return f"the {picks} weekend day (Saturday or Sunday)"
    return f"the {picks} " + _list_en([DAY_EN[d] for d in ordered], "or")


def _rule_en(rec: Recurrence) -> str:
    parts = _rule_parts(rec.rule or "")
    freq = parts.get("FREQ")
    n = int(parts.get("INTERVAL", "1"))
    byday = [d for d in parts.get("BYDAY", "").split(",") if d]
    plain_days = [d for d in byday if d in DAY_EN]
    times = "at " + _list_en(_times(rec, parts))
    months = parts.get("BYMONTH")
    in_months = _list_en([MONTH_EN[int(m) - 1] for m in months.split(",")]) if months else ""
    if freq == "DAILY":
        lead = _every_en(n, "day")
        if plain_days and len(plain_days) == len(byday):
            lead = _weekdays_en(plain_days)
        return f"{_first_up(lead)}{' in ' + in_months if in_months else ''} {times}"
    if freq == "WEEKLY":
        days = plain_days or [ORDER[rec.dtstart.weekday()]]
        text = _weekdays_en(days)
        if n > 1:
            text = f"every {n} weeks on " + _list_en([DAY_EN[d] for d in sorted(days, key=ORDER.index)])
        return f"{_first_up(text)} {times}"
    if freq in ("MONTHLY", "YEARLY"):
        lead = _first_up(_every_en(n, "month" if freq == "MONTHLY" else "year"))
        if freq == "YEARLY":
            lead += " in " + (in_months or MONTH_EN[rec.dtstart.month - 1])
        if "BYMONTHDAY" in parts:
            picked = parts["BYMONTHDAY"].split(",")
            days_text = _list_en(["the last day" if d == "-1" else f"day {d}" for d in picked])
            return f"{lead} on {days_text} {times}"
        if "BYSETPOS" in parts and plain_days and len(plain_days) == len(byday):
            return f"{lead} on {_setpos_en(parts['BYSETPOS'], plain_days)} {times}"
        matches = [NTH_DAY.match(d) for d in byday]
        if matches and all(matches):
            picks = []
            for m in matches:
                nth = int(m.group(1)) if m.group(1) else int(parts.get("BYSETPOS", "0") or 0)
                picks.append(f"{'the ' + _ordinal_en(nth) if nth else 'every'} {DAY_EN[m.group(2)]}")
            return f"{lead} on {_list_en(picks)} {times}"
        return f"{lead} on day {rec.dtstart.day} {times}"
    return f"Custom rule {rec.rule} {times}"


def summary_en(rec: Recurrence) -> str:
    """summary_zh in English, e.g. "Every Monday and Friday at 07:30, until 30 June 2027, 52 plays in all"."""
    if rec.kind == "once":
        text = f"Once, on {_date_en(rec.dtstart)} at {rec.dtstart:%H:%M}"
    elif rec.kind == "cron":
        text = f"By the cron expression “{rec.cron}”"
    else:
        text = _rule_en(rec)
    if rec.until is not None:
        text += f", until {_date_en(rec.until)}"
    if rec.exdates:
        text += f", skipping {len(rec.exdates)} date{'s' if len(rec.exdates) != 1 else ''}"
    n = total(rec) if rec.kind != "once" else None
    if n is not None:
        text += f", {n} play{'s' if n != 1 else ''} in all"
    if rec.timezone != DEFAULT_TIMEZONE:
        text += f" ({rec.timezone} local time)"
    return text


def summary(rec: Recurrence, lang: str = "zh") -> str:
    """The rule's summary in a language: "en" for English, Chinese otherwise."""
    return summary_en(rec) if lang == "en" else summary_zh(rec)
