"""Pin: recurrence edges (zones, rule text, inclusive ends, window bounds, cron starts, search horizons)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import Recurrence, ScheduleError, build, localize, next_occurrences, occurrences, total, zone

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


@pytest.mark.parametrize(("name", "shown"), [(5, ""), ("  ", ""), (None, ""), ("Mars/Base", "Mars/Base")])
def test_an_unknown_zone_is_refused_naming_it(name: object, shown: str) -> None:
    with pytest.raises(ScheduleError) as info:
        zone(name)
    assert info.value.code == "schedule.unknown_timezone"
    assert info.value.en == f"Unknown time zone: {shown} (e.g. Asia/Shanghai)"
    assert info.value.zh == f"时区不存在：{shown}（例如 Asia/Shanghai）"


def test_an_ambiguous_wall_time_means_its_first_instance() -> None:
    second = datetime(2026, 11, 1, 1, 30, fold=1)  # New York falls back at 02:00: 01:30 happens twice
    assert localize(second, NY).utcoffset() == timedelta(hours=-4)


@pytest.mark.parametrize("text", ["RRULE:FREQ=WEEKLY", "rrule:FREQ=WEEKLY", " FREQ=WEEKLY "])
def test_the_frequency_is_read_with_or_without_the_rrule_prefix(text: str) -> None:
    assert Recurrence(datetime(2026, 12, 1, 7, 30), rule=text).freq == ("WEEKLY" if text != "rrule:FREQ=WEEKLY"
                                                                          else None)  # fmt: skip


def test_empty_parts_of_a_rule_are_ignored() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY;;BYHOUR=7,12;BYMINUTE=30;")
    assert rec.rule == "FREQ=DAILY;BYHOUR=7,12;BYMINUTE=30"


def test_a_rule_part_without_a_value_is_refused_quoting_the_rule() -> None:
    with pytest.raises(ScheduleError) as info:
        build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY;BYHOUR")
    assert info.value.code == "schedule.invalid_rrule"
    assert info.value.en == "Invalid recurrence rule: FREQ=DAILY;BYHOUR (e.g. FREQ=WEEKLY;BYDAY=MO,WE,FR)"
    assert info.value.zh == "重复规则无效：FREQ=DAILY;BYHOUR（例如 FREQ=WEEKLY;BYDAY=MO,WE,FR）"


def test_the_end_is_inclusive_to_the_second() -> None:
    rec = build(dtstart="2026-12-01T00:00", rrule_text="FREQ=DAILY", until="2026-12-03")  # to 23:59:59
    assert occurrences(rec, local(2026, 11, 30), local(2026, 12, 10)) == [local(2026, 12, d) for d in (1, 2, 3)]
    exact = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", until="2026-12-03T07:30")
    assert total(exact) == 3


def test_a_count_stops_after_that_many() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY", count=2)
    assert occurrences(rec, local(2026, 11, 30), local(2026, 12, 10)) == [local(2026, 12, 1, 7, 30),
                                                                           local(2026, 12, 2, 7, 30)]  # fmt: skip


def test_a_window_includes_its_start_and_excludes_its_end() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")
    second, third = local(2026, 12, 2, 7, 30), local(2026, 12, 3, 7, 30)
    assert rec.indexed(second, local(2026, 12, 4, 7, 30)) == [(1, second), (2, third)]


def test_a_cron_schedule_never_fires_before_its_start() -> None:
    rec = Recurrence(datetime(2026, 12, 1, 7, 30, 1), timezone="Asia/Shanghai", cron="* * * * *")
    assert next_occurrences(rec, local(2026, 12, 1), 2) == [local(2026, 12, 1, 7, 31), local(2026, 12, 1, 7, 32)]
    on_time = Recurrence(datetime(2026, 12, 1, 7, 30), timezone="Asia/Shanghai", cron="30 7 * * *")
    assert next_occurrences(on_time, local(2026, 12, 1), 1) == [local(2026, 12, 1, 7, 30)]


def test_the_next_five_by_default_searched_up_to_the_horizon_exclusive() -> None:
    rec = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")
    assert len(next_occurrences(rec, local(2026, 12, 1))) == 5
    now = local(2026, 12, 1, 7, 30)
    assert next_occurrences(rec, now, 5, within=timedelta(days=1)) == [now]
    assert next_occurrences(rec, local(2026, 12, 1), 5, within=timedelta(hours=12)) == [now]


def test_a_single_play_on_a_skipped_day_plays_zero_times() -> None:
    rec = Recurrence(datetime(2026, 12, 1, 7, 30), exdates=frozenset({date(2026, 12, 1)}))  # build refuses it
    assert total(rec) == 0


@pytest.mark.parametrize(
    ("fields", "ends"),
    [
        ({}, True),  # once
        ({"rrule_text": "FREQ=DAILY"}, False),
        ({"cron": "30 7 * * 1-5"}, False),
        ({"rrule_text": "FREQ=DAILY", "until": "2027-06-30"}, True),
        ({"rrule_text": "FREQ=DAILY", "count": 3}, True),
        ({"rrule_text": "FREQ=DAILY;COUNT=3"}, True),
    ],
)
def test_only_a_rule_with_an_end_can_end(fields: dict[str, object], ends: bool) -> None:
    from schedules import can_end

    rec = build(dtstart="2026-12-01T07:30", **fields)
    assert can_end(rec) is ends
    if not ends:  # a rule that cannot end still has plays years ahead
        assert next_occurrences(rec, datetime(2036, 1, 1, tzinfo=SH), 1)
