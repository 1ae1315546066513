"""Every recurrence kind, skip dates, ends and time zones, on a controllable clock (plain `now` values)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import (
    Recurrence,
    ScheduleError,
    build,
    next_occurrences,
    occurrences,
    rrule_for,
    total,
    with_exdate,
)

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)  # a Wednesday in Shanghai


def local(*args: int, tz: ZoneInfo = SH) -> datetime:
    return datetime(*args, tzinfo=tz)


def walls(items: list[datetime]) -> list[str]:
    return [f"{d:%Y-%m-%d %a %H:%M}" for d in items]


def test_once_plays_exactly_at_its_start() -> None:
    rec = build(dtstart="2026-12-01T07:30")
    assert rec.kind == "once"
    assert next_occurrences(rec, NOW, 5) == [local(2026, 12, 1, 7, 30)]
    assert next_occurrences(rec, local(2026, 12, 1, 7, 31), 5) == []
    assert total(rec) == 1


def test_daily_and_every_n_days() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text=rrule_for("daily"))
    assert walls(next_occurrences(rec, NOW, 3)) == [
        "2026-12-01 Tue 07:30",
        "2026-12-02 Wed 07:30",
        "2026-12-03 Thu 07:30",
    ]
    every3 = build(dtstart="2026-12-01T07:30", rrule_text=rrule_for("daily", interval=3))
    assert [d.day for d in next_occurrences(every3, NOW, 3)] == [1, 4, 7]
    assert total(rec) is None


def test_workdays_and_weekly_days() -> None:
    workdays = build(dtstart="2026-12-04T07:30", rrule_text=rrule_for("workdays"))
    assert [d.strftime("%a") for d in next_occurrences(workdays, NOW, 4)] == ["Fri", "Mon", "Tue", "Wed"]
    mwf = build(dtstart="2026-12-01T07:30", rrule_text=rrule_for("weekly", days=[0, 2, 4]))
    assert [d.strftime("%a %d") for d in next_occurrences(mwf, NOW, 4)] == ["Wed 02", "Fri 04", "Mon 07", "Wed 09"]


def test_every_two_weeks() -> None:
    rec = build(dtstart="2026-11-30T18:00", rrule_text=rrule_for("weekly", days=[0], interval=2))
    assert [d.date() for d in next_occurrences(rec, NOW, 3)] == [
        date(2026, 11, 30),
        date(2026, 12, 14),
        date(2026, 12, 28),
    ]


def test_monthly_by_day_and_first_monday_and_last_day() -> None:
    by_day = build(dtstart="2026-12-15T09:00", rrule_text=rrule_for("monthly_day", monthday=15))
    assert [d.date() for d in next_occurrences(by_day, NOW, 2)] == [date(2026, 12, 15), date(2027, 1, 15)]
    first_monday = build(dtstart="2026-12-01T09:00", rrule_text=rrule_for("monthly_weekday", nth=1, weekday=0))
    assert [d.date() for d in next_occurrences(first_monday, NOW, 3)] == [
        date(2026, 12, 7),
        date(2027, 1, 4),
        date(2027, 2, 1),
    ]
    last_day = build(dtstart="2027-01-01T09:00", rrule_text=rrule_for("monthly_day", monthday=-1))
    assert [d.day for d in next_occurrences(last_day, NOW, 3)] == [31, 28, 31]


def test_expert_rrule_with_until_in_utc_and_several_times_a_day() -> None:
    rec = build(dtstart="2026-12-01T00:00", rrule_text="FREQ=DAILY;BYHOUR=7,12,18;BYMINUTE=0;UNTIL=20261202T000000Z")
    # UNTIL 00:00 UTC is 08:00 in Shanghai on 12-02: three plays on 12-01 and the 07:00 of 12-02
    assert walls(next_occurrences(rec, NOW, 10)) == [
        "2026-12-01 Tue 07:00",
        "2026-12-01 Tue 12:00",
        "2026-12-01 Tue 18:00",
        "2026-12-02 Wed 07:00",
    ]
    assert total(rec) == 4


def test_cron_expression_in_the_schedules_zone() -> None:
    rec = build(dtstart="2026-12-01T00:00", cron="30 7 * * 1-5")
    assert walls(next_occurrences(rec, NOW, 3)) == [
        "2026-12-01 Tue 07:30",
        "2026-12-02 Wed 07:30",
        "2026-12-03 Thu 07:30",
    ]
    limited = build(dtstart="2026-12-01T00:00", cron="30 7 * * 1-5", count=2)
    assert len(next_occurrences(limited, NOW, 10)) == 2


def test_count_and_until_end_a_schedule() -> None:
    counted = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", count=3)
    assert total(counted) == 3
    assert next_occurrences(counted, local(2026, 12, 3, 8, 0), 5) == []
    until = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", until="2026-12-05")
    assert [d.day for d in next_occurrences(until, NOW, 10)] == [1, 2, 3, 4, 5]  # a bare date includes that day


def test_skip_dates_and_one_cancelled_occurrence() -> None:
    rec = build(dtstart="2026-12-28T07:30", rrule_text=rrule_for("daily"), exdates=["2027-01-01", "2026-12-30T07:30"])
    assert [d.day for d in next_occurrences(rec, NOW, 4)] == [28, 29, 31, 2]
    fewer = with_exdate(rec, datetime(2026, 12, 31, 7, 30))
    assert [d.day for d in next_occurrences(fewer, NOW, 3)] == [28, 29, 2]


def test_playlist_index_skips_holidays_but_counts_from_the_first_play() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", exdates=["2026-12-02"])
    pairs = rec.indexed(local(2026, 12, 3, 0, 0), local(2026, 12, 5, 0, 0))
    assert [(i, d.day) for i, d in pairs] == [(1, 3), (2, 4)]


def test_server_in_utc_schedule_in_shanghai() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", timezone="Asia/Shanghai")
    first = next_occurrences(rec, NOW, 1)[0]
    assert first.astimezone(UTC) == datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # the evening before, in UTC
    found = occurrences(rec, datetime(2026, 11, 30, 23, 0, tzinfo=UTC), datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    assert found == [first]


def test_across_another_zones_dst_change_the_wall_clock_time_holds() -> None:
    ny = ZoneInfo("America/New_York")  # DST ends 2026-11-01 02:00 local
    rec = build(dtstart="2026-10-30T07:30", rrule_text="FREQ=DAILY", timezone="America/New_York")
    days = next_occurrences(rec, datetime(2026, 10, 29, tzinfo=UTC), 4)
    assert [f"{d:%H:%M}" for d in days] == ["07:30"] * 4
    assert [d.astimezone(UTC).hour for d in days] == [11, 11, 12, 12]  # EDT (-4) then EST (-5)
    assert all(d.tzinfo == ny for d in days)


def test_a_time_skipped_by_spring_forward_plays_just_after_the_gap() -> None:
    rec = build(dtstart="2027-03-13T02:30", rrule_text="FREQ=DAILY", timezone="America/New_York")
    days = next_occurrences(rec, datetime(2027, 3, 12, tzinfo=UTC), 3)
    assert [f"{d:%m-%d %H:%M}" for d in days] == ["03-13 02:30", "03-14 03:30", "03-15 02:30"]
    assert len({d.astimezone(UTC) for d in days}) == 3


def test_aware_bounds_in_any_zone_select_the_same_occurrences() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")
    a = occurrences(rec, NOW, NOW + timedelta(days=10))
    b = occurrences(rec, NOW.astimezone(ZoneInfo("America/Los_Angeles")), (NOW + timedelta(days=10)).astimezone(SH))
    assert a == b
    assert len(a) == 5  # 12-01 .. 12-05: the bound, 12-05 00:00 UTC, is 08:00 in Shanghai


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "schedule.unknown_timezone"),
        ({"timezone": "../etc/passwd"}, "schedule.unknown_timezone"),
        ({"rrule_text": "FREQ=DAILY", "until": "2026-11-01"}, "schedule.end_before_start"),
        ({"rrule_text": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "schedule.never_fires"),
        ({"rrule_text": "FREQ=WEEKLY;BYDAY=MO", "until": "2026-12-02T00:00"}, "schedule.never_fires"),
        ({"cron": "0 0 30 2 *"}, "schedule.never_fires"),
        ({"rrule_text": "FREQ=WEEKLY;BYDAY=MO;BYSETPOS=5"}, "schedule.never_fires"),
        ({"rrule_text": "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6"}, "schedule.never_fires"),
        ({"exdates": ["2026-12-01"]}, "schedule.never_fires"),
        ({"rrule_text": "FREQ=MINUTELY"}, "schedule.unsupported_rrule"),
        ({"rrule_text": "FREQ=DAILY;BYYEARDAY=1"}, "schedule.unsupported_rrule"),
        ({"rrule_text": "FREQ=DAILY;BYHOUR=25"}, "schedule.invalid_rrule"),
        ({"rrule_text": "every day please"}, "schedule.invalid_rrule"),
        ({"cron": "* * * * *"}, "schedule.too_dense"),
        ({"cron": "*/1 7 * * *"}, "schedule.too_dense"),
        ({"cron": "61 7 * * *"}, "schedule.invalid_cron"),
        ({"cron": "0 30 7 * * *"}, "schedule.invalid_cron"),
        ({"cron": "30 7 * * *", "rrule_text": "FREQ=DAILY"}, "schedule.rule_and_cron"),
        ({"rrule_text": "FREQ=DAILY", "count": 3, "until": "2027-01-01"}, "schedule.until_and_count"),
        ({"rrule_text": "FREQ=DAILY", "count": 0}, "schedule.invalid_count"),
        ({"dtstart": "tomorrow morning"}, "schedule.invalid_dtstart"),
        ({"exdates": 7}, "schedule.invalid_exdates"),
    ],
)
def test_bad_rules_get_a_clear_error_in_both_languages(kwargs: dict, code: str) -> None:
    assert build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")  # the positive path works
    args = {"dtstart": "2026-12-01T07:30", **kwargs}
    with pytest.raises(ScheduleError) as caught:
        build(**args)
    assert caught.value.code == code
    assert caught.value.zh
    assert caught.value.en != caught.value.zh


def test_ten_thousand_plays_a_day_are_refused_and_the_limit_is_settable() -> None:
    dense = "FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=0,30"
    assert len(next_occurrences(build(dtstart="2026-12-01T00:00", rrule_text=dense), NOW, 100)) == 100
    with pytest.raises(ScheduleError, match="48") as caught:
        build(dtstart="2026-12-01T00:00", rrule_text=dense.replace("0,30", "0,20,40"))
    assert caught.value.code == "schedule.too_dense"
    with pytest.raises(ScheduleError):
        build(dtstart="2026-12-01T00:00", rrule_text=dense, max_per_day=10)


def test_recurrence_is_a_value() -> None:
    a = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")
    b = Recurrence(dtstart=datetime(2026, 12, 1, 7, 30), rule="FREQ=DAILY")
    assert a == b
    assert hash(a) == hash(b)
