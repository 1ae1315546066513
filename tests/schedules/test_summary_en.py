"""The English summary: the same rules as the Chinese one, said as an English reader would say them."""

from __future__ import annotations

import pytest

from schedules import build, rrule_for, summary_zh
from schedules.summary import summary, summary_en


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # daily, every N days, several times a day, within some months
        ({"rrule_text": rrule_for("daily")}, "Every day at 07:30"),
        ({"rrule_text": rrule_for("daily", interval=2), "count": 10}, "Every 2 days at 07:30, 10 plays in all"),
        ({"rrule_text": "FREQ=DAILY;BYHOUR=7,18;BYMINUTE=0"}, "Every day at 07:00 and 18:00"),
        ({"rrule_text": "FREQ=DAILY;BYMONTH=6,7"}, "Every day in June and July at 07:30"),
        # workdays, weekly on days, every N weeks
        ({"rrule_text": rrule_for("workdays")}, "Weekdays (Monday to Friday) at 07:30"),
        (
            {"rrule_text": rrule_for("weekly", days=[0, 2, 4]), "until": "2027-06-30"},
            "Every Monday, Wednesday and Friday at 07:30, until 30 June 2027, 91 plays in all",
        ),
        ({"rrule_text": rrule_for("weekly", days=[5, 6])}, "Every Saturday and Sunday at 07:30"),
        ({"rrule_text": rrule_for("weekly", days=[0, 3], interval=2)}, "Every 2 weeks on Monday and Thursday at 07:30"),
        # monthly (and yearly) by day of the month
        ({"rrule_text": rrule_for("monthly_day", monthday=15)}, "Every month on day 15 at 07:30"),
        ({"rrule_text": rrule_for("monthly_day", monthday=-1)}, "Every month on the last day at 07:30"),
        ({"rrule_text": rrule_for("monthly_day", monthday=1, interval=3)}, "Every 3 months on day 1 at 07:30"),
        ({"rrule_text": "FREQ=YEARLY;BYMONTH=6;BYMONTHDAY=1"}, "Every year in June on day 1 at 07:30"),
        # the nth weekday of the month
        ({"rrule_text": rrule_for("monthly_weekday", nth=1, weekday=0)}, "Every month on the first Monday at 07:30"),
        ({"rrule_text": rrule_for("monthly_weekday", nth=-1, weekday=4)}, "Every month on the last Friday at 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO"}, "Every month on every Monday at 07:30"),
        # BYSETPOS picks among the month's matching days: one play a month, not one per weekday listed
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"}, "Every month on the last workday at 07:30"),
        (
            {"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1,-1"},
            "Every month on the first and last workday at 07:30",
        ),
        (
            {"rrule_text": "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1"},
            "Every month on the first weekend day (Saturday or Sunday) at 07:30",
        ),
        (
            {"rrule_text": "FREQ=MONTHLY;BYDAY=TU,TH;BYSETPOS=-2"},
            "Every month on the second-to-last Tuesday or Thursday at 07:30",
        ),
        (
            {"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYSETPOS=-1"},
            "Every month on the last day at 07:30",
        ),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=2"}, "Every month on the second Monday at 07:30"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=6"}, "Every month on the 6th workday at 07:30"),
        (
            {"rrule_text": "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-3"},
            "Every month on the 3rd-to-last workday at 07:30",
        ),
        # once, expert cron, until / count / skipped dates, another time zone
        ({}, "Once, on 1 December 2026 at 07:30"),
        ({"cron": "30 7 * * 1-5", "exdates": ["2026-12-02"]}, "By the cron expression “30 7 * * 1-5”, skipping 1 date"),
        (
            {"rrule_text": "FREQ=DAILY", "until": "2026-12-10", "exdates": ["2026-12-05", "2026-12-06"]},
            "Every day at 07:30, until 10 December 2026, skipping 2 dates, 8 plays in all",
        ),
        ({"rrule_text": "FREQ=DAILY", "count": 1}, "Every day at 07:30, 1 play in all"),
        (
            {"rrule_text": "FREQ=DAILY", "timezone": "Europe/Berlin", "count": 2},
            "Every day at 07:30, 2 plays in all (Europe/Berlin local time)",
        ),
    ],
)
def test_english_summary_reads_as_a_person_would_say_it(kwargs: dict, expected: str) -> None:
    rec = build(dtstart="2026-12-01T07:30", **kwargs)
    assert summary_en(rec) == expected
    assert summary(rec, "en") == expected


@pytest.mark.parametrize("lang", ["zh", "", "fr"])
def test_any_other_language_gets_the_chinese_summary(lang: str) -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text=rrule_for("workdays"), count=5)
    assert summary(rec, lang) == summary_zh(rec) == "工作日（周一至周五） 07:30，共 5 次"
