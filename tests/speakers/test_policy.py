"""Device rules as pure decisions over explicit times (the end-to-end matrix is in test_device_rules)."""

from __future__ import annotations

import calendar

from speakers.agent.policy import Planner, PlayItem
from speakers.config import in_quiet_hours, parse_quiet_hours

T0 = float(calendar.timegm((2026, 11, 23, 4, 0, 0)))  # 12:00 in China (UTC+8)


def item(play_id: str, priority: str = "normal", start: float = T0, *, expires: float | None = None,
         seq: int = 1) -> PlayItem:  # fmt: skip
    return PlayItem(
        play_id=play_id, command_id=play_id, broadcast_id=f"b-{play_id}", priority=priority, media_url="http://m",
        sha256="a" * 64, duration_ms=1000, start_at=start, expires_at=expires if expires is not None else start + 60,
        volume=None, repeat=1, repeat_gap_ms=0, seq=seq, source="command",
    )  # fmt: skip


def kinds(actions: list) -> list[tuple[str, str]]:
    return [(a.kind, a.item.play_id) for a in actions]


def ready(_item: PlayItem) -> bool:
    return True


def test_higher_priority_preempts_at_its_start_time() -> None:
    planner = Planner([], 480)
    planner.add(item("routine"))
    assert kinds(planner.tick(T0, 0.2, ready)) == [("start", "routine")]
    planner.add(item("warning", "emergency", start=T0 + 5))
    assert planner.tick(T0 + 1, 0.2, ready) == [], "not due yet"
    actions = planner.tick(T0 + 4.9, 0.2, ready)
    assert kinds(actions) == [("preempt", "routine"), ("start", "warning")]
    assert all(a.at == T0 + 5 for a in actions), "preemption happens at the new play's start instant"


def test_equal_and_lower_priority_wait_in_order() -> None:
    planner = Planner([], 480)
    planner.add(item("first", "urgent"))
    planner.tick(T0, 0.2, ready)
    planner.add(item("bg", "background", seq=3))
    planner.add(item("second", "urgent", start=T0 + 0.5, seq=2))
    planner.add(item("third", "normal", seq=4))
    assert planner.tick(T0 + 1, 0.2, ready) == []
    order = []
    for _ in range(3):
        planner.finished()
        order += [a.item.play_id for a in planner.tick(T0 + 2, 0.2, ready) if a.kind == "start"]
    assert order == ["second", "third", "bg"], "priority first, then start time, then sequence"


def test_stale_routine_play_is_missed_not_played() -> None:
    planner = Planner([], 480)
    planner.add(item("long", "normal"))
    planner.tick(T0, 0.2, ready)
    planner.add(item("short-window", "normal", expires=T0 + 3))
    assert planner.tick(T0 + 2, 0.2, ready) == []
    assert kinds(planner.tick(T0 + 3.5, 0.2, ready)) == [("missed", "short-window")]
    planner.finished()
    assert planner.tick(T0 + 4, 0.2, ready) == []


def test_quiet_hours_refuse_all_but_emergency() -> None:
    night = T0 + 11 * 3600  # 23:00 local
    planner = Planner(parse_quiet_hours(["22:00-06:00"]), 480)
    planner.add(item("news", "urgent", start=night))
    planner.add(item("flood", "emergency", start=night, seq=2))
    assert kinds(planner.tick(night, 0.2, ready)) == [("start", "flood")]
    planner.finished()
    assert kinds(planner.tick(night + 1, 0.2, ready)) == [("refused", "news")]
    day = Planner(parse_quiet_hours(["22:00-06:00"]), 480)
    day.add(item("news", "urgent"))
    assert kinds(day.tick(T0, 0.2, ready)) == [("start", "news")]


def test_quiet_hours_spans() -> None:
    spans = parse_quiet_hours(["22:00-06:00", "12:30-13:00"])
    assert in_quiet_hours(spans, T0 + 10 * 3600 + 1, 480)  # 22:00:01
    assert in_quiet_hours(spans, T0 + 17 * 3600, 480)  # 05:00
    assert not in_quiet_hours(spans, T0 + 18 * 3600, 480)  # 06:00
    assert in_quiet_hours(spans, T0 + 45 * 60, 480)  # 12:45
    assert not in_quiet_hours(spans, T0, 480)  # 12:00
    assert not in_quiet_hours(spans, T0 + 10 * 3600 + 1, 0), "the time zone matters"


def test_not_ready_media_waits_and_wake_times() -> None:
    planner = Planner([], 480)
    planner.add(item("a", start=T0 + 10, expires=T0 + 20))
    assert planner.tick(T0 + 10, 0.2, lambda i: False) == []
    assert planner.next_wake(T0, 0.2) == T0 + 10 - 0.2
    assert kinds(planner.tick(T0 + 11, 0.2, ready)) == [("start", "a")]


def test_the_next_play_is_armed_to_follow_once_the_end_of_the_current_is_within_the_horizon() -> None:
    planner = Planner([], 480)
    planner.add(item("tone", "emergency"))
    planner.tick(T0, 0.2, ready)
    planner.add(item("speech", "emergency", start=T0 + 0.5, seq=2))
    assert planner.tick(T0 + 1, 0.2, ready) == [], "the end of the tone is not known yet"
    planner.ends(T0 + 2)
    assert planner.next_wake(T0 + 1, 0.2) == T0 + 1.8
    assert planner.tick(T0 + 1.7, 0.2, ready) == [], "its end is beyond the horizon"
    actions = planner.tick(T0 + 1.8, 0.2, ready)
    assert kinds(actions) == [("follow", "speech")]
    assert actions[0].at == T0 + 2, "it begins the instant the tone ends"
    assert planner.tick(T0 + 1.9, 0.2, ready) == [], "armed once"
    assert planner.next_wake(T0 + 1.9, 0.2) is None
    assert planner.finished() is not None
    assert planner.current is not None
    assert planner.current.play_id == "speech"
    assert (planner.after, planner.current_end) == (None, None)


def test_a_play_that_outranks_the_current_one_sends_the_armed_follower_back_to_the_queue() -> None:
    planner = Planner([], 480)
    planner.add(item("first"))
    planner.tick(T0, 0.2, ready)
    planner.ends(T0 + 2)
    planner.add(item("second", seq=2))
    assert kinds(planner.tick(T0 + 1.9, 0.2, ready)) == [("follow", "second")]
    planner.add(item("alarm", "emergency", start=T0 + 1.95, seq=3))
    assert kinds(planner.tick(T0 + 1.9, 0.2, ready)) == [("unarm", "second"), ("preempt", "first"),
                                                        ("start", "alarm")]  # fmt: skip
    assert list(planner.pending) == ["second"]
    assert planner.after is None


def test_a_more_urgent_play_takes_the_armed_followers_place() -> None:
    planner = Planner([], 480)
    planner.add(item("alarm", "emergency"))
    planner.tick(T0, 0.2, ready)
    planner.ends(T0 + 2)
    planner.add(item("news", "normal", seq=2))
    assert kinds(planner.tick(T0 + 1.9, 0.2, ready)) == [("follow", "news")]
    planner.add(item("notice", "urgent", seq=3))
    planner.add(item("chat", "background", seq=4))
    assert kinds(planner.tick(T0 + 1.9, 0.2, ready)) == [("unarm", "news"), ("follow", "notice")]
    assert sorted(planner.pending) == ["chat", "news"]


def test_a_play_whose_start_window_closes_before_the_current_ends_is_not_armed_but_missed() -> None:
    planner = Planner([], 480)
    planner.add(item("long"))
    planner.tick(T0, 0.2, ready)
    planner.ends(T0 + 2)
    planner.add(item("brief", start=T0 + 1, expires=T0 + 1.95, seq=2))
    assert planner.tick(T0 + 1.9, 0.2, ready) == []
    assert kinds(planner.tick(T0 + 1.96, 0.2, ready)) == [("missed", "brief")]


def test_a_follower_due_in_quiet_hours_is_refused_there() -> None:
    ten_pm = T0 + 10 * 3600  # 22:00 local
    planner = Planner(parse_quiet_hours(["22:00-06:00"]), 480)
    planner.add(item("flood", "emergency", start=ten_pm - 2))
    planner.tick(ten_pm - 2, 0.2, ready)
    planner.ends(ten_pm + 0.1)
    planner.add(item("news", "normal", start=ten_pm - 1, seq=2))
    assert planner.tick(ten_pm - 0.5, 0.2, ready) == [], "before quiet hours, it waits for the alarm to end"
    assert kinds(planner.tick(ten_pm, 0.2, ready)) == [("refused", "news")]
