"""Pin: the running rules of schedules at their edges (playlist order, grace, miss runs, quiet windows)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import ScheduleError, coalesce_misses, in_window, item_for, misfire_decision

SH = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 12, 1, 7, 30, tzinfo=SH)


def test_an_unknown_playlist_mode_is_refused_in_both_languages() -> None:
    with pytest.raises(ScheduleError) as info:
        item_for(0, 3, "shuffle")
    assert info.value.code == "schedule.invalid_playlist_mode"
    assert info.value.zh == "播放方式无效：shuffle（advance 顺序播完，rotate 循环）"
    assert info.value.en == "Invalid playlist mode: shuffle (advance or rotate)"


@pytest.mark.parametrize("mode", ["advance", "rotate"])
def test_a_one_item_playlist_plays_that_item(mode: str) -> None:
    assert item_for(0, 1, mode) == 0
    assert item_for(1, 1, mode) == (0 if mode == "rotate" else None)
    assert item_for(0, 0, mode) is None


def test_exactly_at_the_grace_limit_still_plays() -> None:
    assert misfire_decision(1000.0, 1300.0, 300.0) == "play"
    assert misfire_decision(1000.0, 1300.5, 300.0) == "missed"


def test_each_miss_run_names_its_first_and_last_occurrence() -> None:
    at = [T + timedelta(days=d) for d in range(7)]
    plan = ["missed", "missed", "missed", "play", "missed", "missed", "play"]
    runs = coalesce_misses(reversed(list(zip(at, plan, strict=True))))
    assert [(r.first, r.last, r.count) for r in runs] == [(at[0], at[2], 3), (at[4], at[5], 2)]
    trailing = coalesce_misses([(at[1], "missed"), (at[0], "play"), (at[3], "missed"), (at[2], "missed")])
    assert [(r.first, r.last, r.count) for r in trailing] == [(at[1], at[3], 3)]


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        (time(12), time(14), [time(12), time(13, 59, 59)], [time(14), time(11, 59, 59)]),
        (time(22), time(6), [time(22), time(0), time(5, 59, 59)], [time(6), time(21, 59, 59)]),
    ],
)
def test_a_window_includes_its_start_and_excludes_its_end(
    start: time, end: time, inside: list[time], outside: list[time]
) -> None:
    assert all(in_window(t, start, end) for t in inside)
    assert not any(in_window(t, start, end) for t in outside)
