"""Pin: the priority ladder and the overlap search at their edges (ties, unknown priorities, horizons)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import Overlap, Slot, conflicts, resolve

SH = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 12, 1, 7, 30, tzinfo=SH)


def slot(
    sid: object, minutes_in: float = 0, *, length: float = 5, speakers: str = "a,b", priority: str = "normal"
) -> Slot:
    return Slot(sid, frozenset(speakers.split(",")), T + timedelta(minutes=minutes_in), length * 60, priority)


@pytest.mark.parametrize(
    ("a", "b", "winner", "outcome"),
    [
        (slot(1, 0, priority="urgent"), slot(2, 2), 1, "queued"),  # the lower one has not begun: it waits
        (slot(1, 2, priority="urgent"), slot(2, 0), 1, "preempted"),  # the lower one is playing: cut off
        (slot(1, 0, priority="urgent"), slot(2, 0), 1, "queued"),  # same instant: waits, never cut
        (slot(1, 0), slot(2, 2, priority="emergency"), 2, "preempted"),
        (slot(1, 0), slot(2, 2), 1, "queued"),
        (slot(1, 2), slot(2, 0), 2, "queued"),
        (slot(1, 0), slot(2, 0), 2, "queued"),  # a tie goes to the existing one
        (slot(1, 0, priority="custom"), slot(2, 2, priority="background"), 1, "queued"),  # unknown ranks as normal
        (slot(1, 2, priority="custom"), slot(2, 0, priority="urgent"), 2, "queued"),
        (slot(1, 2), slot(2, 0, priority="custom"), 2, "queued"),
        (slot(1, 0, priority="background"), slot(2, 2, priority="custom"), 2, "preempted"),
        (slot(1, 2, priority="custom"), slot(2, 0), 2, "queued"),  # a tie with normal: the earlier plays
        (slot(1, 0), slot(2, 2, priority="custom"), 1, "queued"),
    ],
)
def test_the_ladder(a: Slot, b: Slot, winner: int, outcome: str) -> None:
    won, fate = resolve(a, b)
    assert (won.schedule_id, fate) == (winner, outcome)


def test_descriptions_name_the_winner_and_the_fate_of_the_other() -> None:
    cut = Overlap(slot("new", 2, priority="custom"), slot(7, 0), ("a", "b"), "new", "preempted")
    assert cut.describe_zh() == "12-01 07:32 与计划 7 在 2 个终端上重叠：本计划（custom）优先，计划 7被打断"
    assert (
        cut.describe_en() == "12-01 07:32 overlaps schedule 7 on 2 speakers: schedule new plays, the other is cut off"
    )
    wait = Overlap(slot("new", 2), slot(7, 0, priority="urgent"), ("a",), 7, "queued")
    assert wait.describe_en() == "12-01 07:32 overlaps schedule 7 on 1 speakers: schedule 7 plays, the other waits"
    assert wait.describe_zh() == "12-01 07:32 与计划 7 在 1 个终端上重叠：计划 7（紧急通知）优先，本计划排队等待"


def test_nothing_to_overlap_with_is_no_conflict() -> None:
    assert conflicts([slot("new")], []) == []


def test_the_horizon_includes_its_start_and_excludes_its_end() -> None:
    mine = [slot("new", m) for m in (-60, 0, 60, 120)]
    others = [slot(1, m, length=1) for m in (-60, 0, 60, 120)]
    found = conflicts(mine, others, horizon=(T, T + timedelta(minutes=120)))
    assert [o.candidate.start for o in found] == [T, T + timedelta(minutes=60)]


def test_an_occurrence_overlaps_every_other_that_shares_a_speaker() -> None:
    others = [slot(1, -1, length=10, speakers="c"), slot(2, 0, speakers="b"), slot(3, 1, speakers="a,b")]
    found = conflicts([slot("new", 0)], others)
    assert [(o.other.schedule_id, o.speakers) for o in found] == [(2, ("b",)), (3, ("a", "b"))]


def test_one_that_ended_as_this_one_starts_does_not_overlap() -> None:
    assert conflicts([slot("new", 5)], [slot(1, 0, length=5), slot(2, 0, length=5.01)])[0].other.schedule_id == 2
