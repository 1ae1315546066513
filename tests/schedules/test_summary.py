"""The Chinese summary shown before saving."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schedules import Recurrence, build, occurrences, rrule_for, summary_zh


def window(rec: Recurrence) -> tuple:
    start = rec.dtstart.replace(tzinfo=rec.tz)
    return start, start + timedelta(days=400)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"rrule_text": rrule_for("weekly", days=[0, 2, 4]), "until": "2027-06-30"},
            "每周一、三、五 07:30，至 2027年6月30日，共 91 次",
        ),
        ({"rrule_text": rrule_for("daily")}, "每天 07:30"),
        ({"rrule_text": rrule_for("daily", interval=2), "count": 10}, "每 2 天 07:30，共 10 次"),
        ({"rrule_text": rrule_for("workdays")}, "工作日（周一至周五） 07:30"),
        ({"rrule_text": rrule_for("weekly", days=[5, 6])}, "每周六、日 07:30"),
        ({"rrule_text": rrule_for("weekly", days=[0, 3], interval=2)}, "每 2 周的周一、四 07:30"),
        ({"rrule_text": rrule_for("monthly_day", monthday=15)}, "每月15 日 07:30"),
        ({"rrule_text": rrule_for("monthly_day", monthday=-1)}, "每月最后一天 07:30"),
        ({"rrule_text": rrule_for("monthly_weekday", nth=1, weekday=0)}, "每月第一个星期一 07:30"),
        ({"rrule_text": "FREQ=DAILY;BYHOUR=7,18;BYMINUTE=0"}, "每天 07:00、18:00"),
        # BYSETPOS picks among the month's matching days: one play a month, not one per weekday listed
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"}, "每月最后一个工作日 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1,-1"}, "每月第一个、最后一个工作日 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1"}, "每月第一个周末日（周六或周日） 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=-2"}, "每月倒数第二个星期二或星期四 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYSETPOS=-1"}, "每月最后一天 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=2"}, "每月第二个星期一 07:30"),
        ({}, "2026年12月1日 07:30 播放一次"),
        ({"cron": "30 7 * * 1-5", "exdates": ["2026-12-02"]}, "按 cron 表达式「30 7 * * 1-5」，跳过 1 个日期"),
        (
            {"rrule_text": "FREQ=DAILY", "timezone": "Europe/Berlin", "count": 2},
            "每天 07:30，共 2 次（Europe/Berlin 当地时间）",
        ),
    ],
)
def test_summary_reads_as_a_person_would_say_it(kwargs: dict, expected: str) -> None:
    rec = build(dtstart="2026-12-01T07:30", **kwargs)
    assert summary_zh(rec) == expected


def test_last_workday_summary_matches_the_plays() -> None:
    rec = build(dtstart="2026-12-01T17:00", rrule_text="FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", count=3)
    assert summary_zh(rec) == "每月最后一个工作日 17:00，共 3 次"
    plays = [t.date().isoformat() for t in occurrences(rec, *window(rec))]
    assert plays == ["2026-12-31", "2027-01-29", "2027-02-26"]  # the last Monday-Friday of each month


def test_skipped_holidays_are_not_counted() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", until="2026-12-10", exdates=["2026-12-05"])
    assert summary_zh(rec) == "每天 07:30，至 2026年12月10日，跳过 1 个日期，共 9 次"
