"""Overlaps on shared speakers and the priority ladder's resolution."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from schedules import Slot, build, conflicts, occurrences

SH = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 12, 1, 7, 30, tzinfo=SH)


def slot(sid: object, start: datetime, minutes: float = 5, speakers: str = "a,b", priority: str = "normal") -> Slot:
    return Slot(sid, frozenset(speakers.split(",")), start, minutes * 60, priority)


def test_no_overlap_apart_in_time_or_place() -> None:
    mine = [slot("new", T)]
    assert conflicts(mine, [slot(1, T + timedelta(minutes=5))]) == []  # back to back
    assert conflicts(mine, [slot(2, T, speakers="c,d")]) == []  # other speakers
    assert conflicts(mine, [slot("new", T)]) == []  # itself (an edit) is no conflict


def test_equal_priority_the_earlier_plays_the_later_waits() -> None:
    found = conflicts([slot("new", T + timedelta(minutes=2))], [slot(1, T, speakers="b,c")])
    assert len(found) == 1
    overlap = found[0]
    assert overlap.speakers == ("b",)
    assert (overlap.winner, overlap.outcome) == (1, "queued")
    assert overlap.describe_zh() == "12-01 07:32 与计划 1 在 1 个终端上重叠：计划 1（日常）优先，本计划排队等待"
    assert "waits" in overlap.describe_en()


def test_equal_start_the_existing_one_plays_first() -> None:
    (overlap,) = conflicts([slot("new", T)], [slot(1, T)])
    assert (overlap.winner, overlap.outcome) == (1, "queued")


def test_higher_priority_interrupts_a_lower_one_already_playing() -> None:
    (overlap,) = conflicts([slot("new", T + timedelta(minutes=1), priority="urgent")], [slot(1, T)])
    assert (overlap.winner, overlap.outcome) == ("new", "preempted")
    assert overlap.describe_zh().endswith("本计划（紧急通知）优先，计划 1被打断")
    (later,) = conflicts([slot("new", T, priority="background")], [slot(2, T + timedelta(minutes=1))])
    assert (later.winner, later.outcome) == (2, "preempted")


def test_recurring_schedules_over_a_horizon() -> None:
    day = (datetime(2026, 12, 1, tzinfo=SH), datetime(2026, 12, 8, tzinfo=SH))
    daily = build(dtstart="2026-12-01T07:30", rrule_text="FREQ=DAILY")
    mondays = build(dtstart="2026-12-01T07:28", rrule_text="FREQ=WEEKLY;BYDAY=MO")
    mine = [slot("new", t) for t in occurrences(daily, *day)]
    theirs = [slot(9, t, minutes=3) for t in occurrences(mondays, *day)]
    found = conflicts(mine, theirs, horizon=day)
    assert [(o.candidate.start.day, o.other.start.day) for o in found] == [(7, 7)]


def test_a_county_of_slots_is_checked_quickly_and_correctly() -> None:
    others = [slot(i, T + timedelta(minutes=i), minutes=2, speakers=f"s{i % 100}") for i in range(5_000)]
    mine = [slot("new", T + timedelta(minutes=m), minutes=2, speakers="s0,s1,s99") for m in range(0, 5_000, 50)]
    found = conflicts(mine, others)
    brute = [
        (c.start, o.schedule_id)
        for c in mine
        for o in others
        if o.start < c.end and c.start < o.end and c.speakers & o.speakers
    ]
    assert sorted((o.candidate.start, o.other.schedule_id) for o in found) == sorted(brute)
    assert found
