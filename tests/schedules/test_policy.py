"""Playlist advance/rotate, the misfire policy after downtime, coalesced misses and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import (
    DEFAULT_GRACE_S,
    ScheduleError,
    build,
    coalesce_misses,
    in_window,
    item_for,
    misfire_decision,
    occurrences,
    quiet_hits,
    window_text,
)

SH = ZoneInfo("Asia/Shanghai")


def test_playlist_advances_once_through_then_stops() -> None:
    assert [item_for(i, 3, "advance") for i in range(5)] == [0, 1, 2, None, None]


def test_playlist_rotates() -> None:
    assert [item_for(i, 3, "rotate") for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert item_for(0, 0, "rotate") is None


def test_unknown_playlist_mode() -> None:
    with pytest.raises(ScheduleError) as caught:
        item_for(0, 3, "shuffle")
    assert caught.value.code == "schedule.invalid_playlist_mode"


def test_misfire_routine_content_late_beyond_grace_is_missed() -> None:
    at = 1_800_000_000.0
    assert misfire_decision(at, at, 300) == "play"
    assert misfire_decision(at, at + 299, 300) == "play"
    assert misfire_decision(at, at + 301, 300) == "missed"
    assert misfire_decision(at, at + 301, 600) == "play"  # the grace is settable
    assert misfire_decision(at, at + 301, 300, priority="background") == "missed"
    assert misfire_decision(at, at + 301, 300, priority="urgent") == "play"
    assert misfire_decision(at, at + 7200, 300, priority="urgent") == "missed"
    assert DEFAULT_GRACE_S == 300


def test_after_downtime_the_late_ones_are_missed_and_coalesce_into_one_record() -> None:
    rec = build(dtstart="2026-12-01T07:00", rrule_text="FREQ=DAILY;BYHOUR=7,9,11,13;BYMINUTE=0")
    day = occurrences(rec, datetime(2026, 12, 1, tzinfo=SH), datetime(2026, 12, 2, tzinfo=SH))
    back_at = datetime(2026, 12, 1, 13, 2, tzinfo=SH).timestamp()  # the worker was down from 06:00 to 13:02
    decisions = [(d, misfire_decision(d.timestamp(), back_at, 300)) for d in day]
    assert [x for _, x in decisions] == ["missed", "missed", "missed", "play"]
    runs = coalesce_misses(decisions)
    assert len(runs) == 1
    assert (runs[0].first.hour, runs[0].last.hour, runs[0].count) == (7, 11, 3)


def test_a_play_between_misses_splits_the_runs() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    seq = [(t0 + timedelta(hours=h), x) for h, x in enumerate(["missed", "play", "missed", "missed"])]
    assert [r.count for r in coalesce_misses(reversed(seq))] == [1, 2]
    assert coalesce_misses([]) == []


def test_quiet_window_over_midnight() -> None:
    assert not in_window(time(12, 0), time(22, 0), time(6, 0))
    assert in_window(time(23, 0), time(22, 0), time(6, 0))
    assert in_window(time(5, 59), time(22, 0), time(6, 0))
    assert not in_window(time(6, 0), time(22, 0), time(6, 0))
    assert in_window(time(13, 0), time(12, 0), time(14, 0))
    assert not in_window(time(13, 0), time(12, 0), time(12, 0))


def test_quiet_hours_name_the_window_and_spare_emergencies() -> None:
    quiet = [(time(22, 0), time(6, 0))]
    rec = build(dtstart="2026-12-01T21:00", rrule_text="FREQ=DAILY;BYHOUR=21,23;BYMINUTE=0")
    plays = occurrences(rec, datetime(2026, 12, 1, tzinfo=SH), datetime(2026, 12, 2, tzinfo=SH))
    hits = quiet_hits(plays, quiet)
    assert [(w.hour, window_text(span)) for w, span in hits] == [(23, "22:00-06:00")]
    assert quiet_hits(plays, quiet, priority="emergency") == []
    assert quiet_hits(plays, []) == []
