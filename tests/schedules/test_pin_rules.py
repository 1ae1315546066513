"""Pin: building a checked recurrence from plain values, at every edge of its parsing and its limits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from schedules import ScheduleError, build

START = "2026-12-01T07:30"


def refusal(**kwargs: Any) -> ScheduleError:
    """The error `build(**kwargs)` raises (dtstart defaults to START)."""
    kwargs.setdefault("dtstart", START)
    with pytest.raises(ScheduleError) as info:
        build(**kwargs)
    return info.value


# --- times ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "wall"),
    [
        (datetime(2026, 11, 30, 23, 30, 15, 999, tzinfo=UTC), datetime(2026, 12, 1, 7, 30, 15)),  # aware: local
        (datetime(2026, 12, 1, 7, 30, 15, 999), datetime(2026, 12, 1, 7, 30, 15)),  # naive: already local
        (date(2026, 12, 1), datetime(2026, 12, 1, 23, 59, 59)),
        ("2026-12-01T07:30", datetime(2026, 12, 1, 7, 30)),
        (" 2026-12-01T07:30:00.5 ", datetime(2026, 12, 1, 7, 30)),
        ("2026-12-01T07:30+00:00", datetime(2026, 12, 1, 15, 30)),
        ("2026-12-01", datetime(2026, 12, 1, 23, 59, 59)),
    ],
)
def test_a_start_or_an_end_is_a_local_wall_time_to_the_second(given: object, wall: datetime) -> None:
    assert build(dtstart=given).dtstart == wall
    assert build(dtstart="2026-11-01T00:00", rrule_text="FREQ=DAILY", until=given).until == wall


@pytest.mark.parametrize(
    ("field", "code", "zh"),
    [
        ("dtstart", "schedule.invalid_dtstart", "开始时间"),
        ("until", "schedule.invalid_until", "结束时间"),
        ("exdates", "schedule.invalid_exdate", "跳过日期"),
    ],
)
@pytest.mark.parametrize("bad", ["not a time", 20261201, "2026-13-45"])
def test_a_time_that_cannot_be_read_is_refused_naming_the_field(field: str, code: str, zh: str, bad: object) -> None:
    kwargs: dict[str, Any] = {"rrule_text": "FREQ=DAILY", field: [bad] if field == "exdates" else bad}
    error = refusal(**kwargs)
    assert error.code == code
    assert error.en == f"Invalid {code.removeprefix('schedule.invalid_')}: {bad} (e.g. 2026-12-01T07:30)"
    assert error.zh == f"{zh}格式无效：{bad}（例如 2026-12-01T07:30）"


def test_a_long_bad_value_is_quoted_shortened() -> None:
    assert refusal(dtstart="x" * 100).en == f"Invalid dtstart: {'x' * 40} (e.g. 2026-12-01T07:30)"


def test_no_zone_means_the_default_and_the_zone_is_kept_by_its_name() -> None:
    assert build(dtstart=START, timezone=None).timezone == "Asia/Shanghai"
    assert build(dtstart=START, timezone="").timezone == "Asia/Shanghai"
    assert build(dtstart=START, timezone=" Europe/Paris ").timezone == "Europe/Paris"


# --- skipped dates -------------------------------------------------------------------------------------


def test_skipped_dates_are_read_as_days_or_single_occurrences() -> None:
    rec = build(
        dtstart=START,
        rrule_text="FREQ=DAILY",
        exdates=[
            date(2026, 12, 2),
            "2026-12-03",
            " 2026-12-04 ",
            "2026-12-05T07:30",
            datetime(2026, 12, 5, 23, 30, 0, 5, tzinfo=UTC),
        ],
    )
    assert rec.exdates == frozenset(
        {
            date(2026, 12, 2),
            date(2026, 12, 3),
            date(2026, 12, 4),
            datetime(2026, 12, 5, 7, 30),
            datetime(2026, 12, 6, 7, 30),
        }
    )


@pytest.mark.parametrize(
    "given",
    [
        "2026-12-02, 2026-12-03",
        "2026-12-02，2026-12-03",
        "2026-12-02,,2026-12-03, ",
        ("2026-12-02", "2026-12-03"),
        {"2026-12-02", "2026-12-03"},
        frozenset({"2026-12-02", "2026-12-03"}),
    ],
)
def test_skipped_dates_come_as_a_list_or_a_comma_separated_text(given: object) -> None:
    assert build(dtstart=START, rrule_text="FREQ=DAILY", exdates=given).exdates == {date(2026, 12, 2),
                                                                                   date(2026, 12, 3)}  # fmt: skip


@pytest.mark.parametrize("empty", [None, "", []])
def test_no_skipped_dates(empty: object) -> None:
    assert build(dtstart=START, rrule_text="FREQ=DAILY", exdates=empty).exdates == frozenset()


def test_skipped_dates_of_another_shape_are_refused() -> None:
    error = refusal(rrule_text="FREQ=DAILY", exdates=20261202)
    assert (error.code, error.zh, error.en) == (
        "schedule.invalid_exdates",
        "跳过日期必须是日期列表。",
        "exdates must be a list of dates.",
    )


# --- ends and counts -----------------------------------------------------------------------------------


def test_an_rrule_or_a_cron_not_both() -> None:
    error = refusal(rrule_text="FREQ=DAILY", cron="30 7 * * *")
    assert (error.code, error.zh, error.en) == (
        "schedule.rule_and_cron",
        "重复规则和 cron 只能选一种。",
        "Give either an RRULE or a cron expression.",
    )


@pytest.mark.parametrize(
    ("until", "count", "rule"),
    [
        ("2026-12-09", 3, "FREQ=DAILY"),
        (None, 3, "FREQ=DAILY;UNTIL=20261209"),
        ("2026-12-09", None, "FREQ=DAILY;COUNT=3"),
        (None, None, "FREQ=DAILY;UNTIL=20261209;COUNT=3"),
    ],
)
def test_an_end_or_a_count_not_both(until: object, count: object, rule: str) -> None:
    error = refusal(rrule_text=rule, until=until, count=count)
    assert (error.code, error.zh, error.en) == (
        "schedule.until_and_count",
        "结束日期和次数只能选一种。",
        "Give an end date or a count, not both.",
    )


def test_an_empty_end_or_count_means_none() -> None:
    rec = build(dtstart=START, rrule_text="FREQ=DAILY", until="", count="")
    assert (rec.until, rec.count) == (None, None)


@pytest.mark.parametrize(
    ("until_part", "until"),
    [
        ("20261209T073000Z", datetime(2026, 12, 9, 15, 30)),
        ("20261209T073000", datetime(2026, 12, 9, 7, 30)),
        ("20261209", datetime(2026, 12, 9, 23, 59, 59)),
    ],
)
def test_an_until_inside_the_rule_becomes_the_end(until_part: str, until: datetime) -> None:
    rec = build(dtstart=START, rrule_text=f"FREQ=DAILY;UNTIL={until_part};BYHOUR=7")
    assert (rec.rule, rec.until, rec.count) == ("FREQ=DAILY;BYHOUR=7", until, None)


def test_a_count_inside_the_rule_becomes_the_count() -> None:
    rec = build(dtstart=START, rrule_text="FREQ=DAILY;COUNT=3")
    assert (rec.rule, rec.until, rec.count) == ("FREQ=DAILY", None, 3)


@pytest.mark.parametrize(
    "until_part", ["2026-12-09", "20261309", "20261209T256000", "20261209T0730", "20261209T73000Z"]
)
def test_an_until_inside_the_rule_that_cannot_be_read_is_a_bad_rule(until_part: str) -> None:
    error = refusal(rrule_text=f"FREQ=DAILY;UNTIL={until_part}")
    assert error.code == "schedule.invalid_rrule"
    assert f"UNTIL={until_part}" in error.en


def test_an_end_before_the_start_is_refused_and_one_at_the_start_is_not() -> None:
    error = refusal(rrule_text="FREQ=DAILY", until="2026-12-01T07:29")
    assert (error.code, error.kind, error.zh, error.en) == (
        "schedule.end_before_start",
        "invalid",
        "结束时间早于开始时间。",
        "The end is before the start.",
    )
    assert build(dtstart=START, rrule_text="FREQ=DAILY", until=START).until == datetime(2026, 12, 1, 7, 30)


@pytest.mark.parametrize(("count", "expected"), [(1, 1), ("100000", 100_000), (" 7", 7), ("7.0", None)])
def test_a_count_is_a_whole_number_from_1_to_100000(count: object, expected: int | None) -> None:
    if expected is None:
        assert refusal(rrule_text="FREQ=DAILY", count=count).code == "schedule.invalid_count"
    else:
        assert build(dtstart=START, rrule_text="FREQ=DAILY", count=count).count == expected


@pytest.mark.parametrize("count", [0, 100_001, True, "three", -1, 2.5])
def test_a_count_out_of_range_or_not_a_number_is_refused(count: object) -> None:
    error = refusal(rrule_text="FREQ=DAILY", count=count)
    assert (error.code, error.zh, error.en) == (
        "schedule.invalid_count",
        "播放次数必须是 1-100000 的整数。",
        "count must be a whole number from 1 to 100000.",
    )


# --- rules -----------------------------------------------------------------------------------------------


def test_a_rule_that_is_not_text_is_a_bad_rule() -> None:
    error = refusal(rrule_text=["FREQ=DAILY"])
    assert error.code == "schedule.invalid_rrule"
    assert error.en == "Invalid recurrence rule: ['FREQ=DAILY'] (e.g. FREQ=WEEKLY;BYDAY=MO,WE,FR)"


@pytest.mark.parametrize("rule", ["FREQ=HOURLY", "FREQ=DAILY;BYWEEKNO=1", "BYDAY=MO", "FREQ=DAILY;BYSECOND=5"])
def test_frequencies_below_a_day_and_slow_parts_are_unsupported(rule: str) -> None:
    error = refusal(rrule_text=rule)
    assert error.code == "schedule.unsupported_rrule"
    assert error.zh == (
        f"不支持的重复规则：{rule}（FREQ 只能是 YEARLY、MONTHLY、WEEKLY、DAILY；一天多次请用 BYHOUR/BYMINUTE）"
    )
    assert error.en == (
        f"Unsupported recurrence rule: {rule} (FREQ YEARLY, MONTHLY, WEEKLY or DAILY; several plays a"
        " day via BYHOUR/BYMINUTE; no BYYEARDAY, BYWEEKNO, BYSECOND)"
    )


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=1001",
        "FREQ=DAILY;INTERVAL=1,2",
        "FREQ=DAILY;INTERVAL=x",
        "FREQ=YEARLY;BYMONTH=0",
        "FREQ=YEARLY;BYMONTH=13",
        "FREQ=YEARLY;BYMONTH=1,x",
        "FREQ=MONTHLY;BYMONTHDAY=x",
        "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=x",
        "FREQ=DAILY;BYHOUR=x;BYSETPOS=1",
        "FREQ=DAILY;BYMINUTE=x;BYSETPOS=1",
    ],
)
def test_numbers_out_of_range_or_unreadable_make_a_bad_rule(rule: str) -> None:
    error = refusal(rrule_text=rule)
    assert error.code == "schedule.invalid_rrule"
    assert error.en == f"Invalid recurrence rule: {rule} (e.g. FREQ=WEEKLY;BYDAY=MO,WE,FR)"


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;INTERVAL=1",
        "FREQ=DAILY;INTERVAL=1000",
        "FREQ=YEARLY;BYMONTH=1,12",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-29",
        "FREQ=YEARLY;BYMONTH=4,5;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYMONTHDAY=1",
        "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31",
    ],
)
def test_rules_at_the_edge_of_the_limits_are_accepted(rule: str) -> None:
    assert build(dtstart="2026-01-01T07:30", rrule_text=rule).rule == rule


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=YEARLY;BYMONTH=4,6;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYMONTHDAY=32",
        "FREQ=MONTHLY;BYMONTHDAY=0",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-30",
    ],
)
def test_a_day_the_chosen_months_do_not_have_never_fires(rule: str) -> None:
    error = refusal(rrule_text=rule)
    assert (error.code, error.zh, error.en) == (
        "schedule.never_fires",
        "按此规则永远不会播放（所选月份没有这一天）。",
        "This rule never fires (the chosen months have no such day).",
    )


@pytest.mark.parametrize(
    ("rule", "most"),
    [
        ("FREQ=DAILY;BYHOUR=7,12;BYMINUTE=0,30", 4),
        ("FREQ=DAILY;BYHOUR=7,12", 2),
        ("FREQ=DAILY;BYMINUTE=0,30", 2),
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", 7),
        ("FREQ=WEEKLY;BYDAY=MO,TU", 2),
        ("FREQ=MONTHLY;BYDAY=MO", 5),
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", 31),
        ("FREQ=MONTHLY;BYMONTHDAY=1,15", 2),
        ("FREQ=YEARLY;BYMONTHDAY=1", 12),
        ("FREQ=YEARLY;BYDAY=MO", 53),
    ],
)
def test_bysetpos_beyond_the_plays_of_a_period_never_fires(rule: str, most: int) -> None:
    assert build(dtstart="2026-01-01T00:00", rrule_text=f"{rule};BYSETPOS={most}", max_per_day=100).rule
    assert build(dtstart="2026-01-01T00:00", rrule_text=f"{rule};BYSETPOS=-{most}", max_per_day=100).rule
    for beyond in (most + 1, -(most + 1)):
        error = refusal(dtstart="2026-01-01T00:00", rrule_text=f"{rule};BYSETPOS={beyond}")
        assert (error.code, error.zh, error.en) == (
            "schedule.never_fires",
            "按此规则永远不会播放（BYSETPOS 超出每个周期的次数）。",
            "This rule never fires (BYSETPOS is beyond the plays of a period).",
        )


def test_rule_keys_and_values_are_read_in_any_case_and_written_in_upper_case() -> None:
    assert build(dtstart=START, rrule_text="freq=weekly; byday=mo,fr").rule == "FREQ=WEEKLY;BYDAY=MO,FR"


# --- cron ------------------------------------------------------------------------------------------------


def test_a_cron_expression_is_kept_with_single_spaces() -> None:
    assert build(dtstart=START, cron="  30   7 * *  1-5 ").cron == "30 7 * * 1-5"


@pytest.mark.parametrize("cron", ["30 7 * *", "0 30 7 * * 1-5", "61 7 * * *", "x y z w v"])
def test_a_cron_expression_needs_five_valid_fields(cron: str) -> None:
    error = refusal(cron=cron)
    shown = " ".join(cron.split())
    assert error.code == "schedule.invalid_cron"
    assert error.zh == f"cron 表达式无效：{shown}（五段：分 时 日 月 周，例如 30 7 * * 1-5）"
    assert error.en == f"Invalid cron expression: {shown} (five fields: minute hour day month weekday)"


# --- never fires, too dense ----------------------------------------------------------------------------


def test_a_rule_whose_plays_are_all_skipped_or_past_its_end_never_fires() -> None:
    for kwargs in ({"exdates": ["2026-12-01"]}, {"rrule_text": "FREQ=WEEKLY;BYDAY=SU", "until": "2026-12-05"}):
        error = refusal(**kwargs)
        assert (error.code, error.zh, error.en) == (
            "schedule.never_fires",
            "按此规则永远不会播放（请检查日期、星期、结束时间和跳过日期）。",
            "This rule never fires (check its days, its end and its skipped dates).",
        )


def test_the_busiest_day_may_have_exactly_the_limit() -> None:
    rule = "FREQ=DAILY;BYHOUR=7,8,9"
    assert build(dtstart="2026-12-01T00:00", rrule_text=rule, max_per_day=3).rule == rule
    error = refusal(dtstart="2026-12-01T00:00", rrule_text=rule, max_per_day=2)
    assert (error.code, error.details) == ("schedule.too_dense", {"max_per_day": 2})
    assert error.zh == "播放过于频繁：2026-12-01 一天超过 2 次。"
    assert error.en == "Too frequent: more than 2 plays on 2026-12-01."


def test_skipped_plays_do_not_count_towards_the_limit() -> None:
    rec = build(
        dtstart="2026-12-01T07:00",
        rrule_text="FREQ=DAILY;BYHOUR=7,8;BYMINUTE=0",
        count=2,
        exdates=["2026-12-01T08:00"],
        max_per_day=1,
    )
    assert rec.count == 2


def first_days_thinned(days: int) -> list[str]:
    """Skip the 08:00 play of the first `days` days of a twice-daily rule starting 2026-12-01."""
    return [f"2026-12-{d:02d}T08:00" for d in range(1, days + 1)]


def test_the_first_fourteen_playing_days_are_checked_for_density() -> None:
    rule = "FREQ=DAILY;BYHOUR=7,8;BYMINUTE=0"
    error = refusal(dtstart="2026-12-01T07:00", rrule_text=rule, exdates=first_days_thinned(13), max_per_day=1)
    assert error.en == "Too frequent: more than 1 plays on 2026-12-14."
    assert build(dtstart="2026-12-01T07:00", rrule_text=rule, exdates=first_days_thinned(14), max_per_day=1).rule


def test_a_skipped_occurrence_with_an_offset_is_read_in_the_schedules_zone() -> None:
    rec = build(dtstart=START, rrule_text="FREQ=DAILY", exdates="2026-12-05T23:30+00:00")
    assert rec.exdates == frozenset({datetime(2026, 12, 6, 7, 30)})


def test_a_single_play_or_a_cron_schedule_has_no_rule() -> None:
    assert build(dtstart=START).rule is None
    assert build(dtstart=START, cron="30 7 * * *").rule is None


@pytest.mark.parametrize("rule", ["FREQ=WEEKLY;BYSETPOS=8", "FREQ=YEARLY;BYSETPOS=367", "FREQ=MONTHLY;BYSETPOS=32"])
def test_bysetpos_beyond_the_days_of_a_period_never_fires(rule: str) -> None:
    assert refusal(rrule_text=rule).en == "This rule never fires (BYSETPOS is beyond the plays of a period)."
