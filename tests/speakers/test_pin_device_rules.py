"""Pins of the device's quiet hours: the first and last minute of a span, both sides, over midnight and by day."""

from __future__ import annotations

import calendar

import pytest

from speakers.agent.policy import Planner, PlayItem
from speakers.config import AgentConfig, in_quiet_hours, parse_quiet_hours
from speakers.errors import SpeakerError
from speakers.messages import Play

CHINA = 480  # UTC+8, minutes


def local(hour: int, minute: int, second: int = 0, day: int = 23) -> float:
    """Unix time of a wall-clock instant in China on 2026-11-<day>."""
    return float(calendar.timegm((2026, 11, day, hour, minute, second))) - CHINA * 60


def item(play_id: str, start: float, priority: str = "normal", seq: int = 1) -> PlayItem:
    """A play of one second, startable for a minute."""
    return PlayItem(
        play_id=play_id, command_id=play_id, broadcast_id=f"b-{play_id}", priority=priority, media_url="http://m",
        sha256="a" * 64, duration_ms=1000, start_at=start, expires_at=start + 60, volume=None, repeat=1,
        repeat_gap_ms=0, seq=seq, source="command",
    )  # fmt: skip


def decide(spans: list[str], start: float, priority: str = "normal") -> str:
    """What a fresh planner does with one play due at `start`: start or refused."""
    planner = Planner(parse_quiet_hours(spans), CHINA)
    planner.add(item("p", start, priority))
    actions = planner.tick(start, 0.2, lambda _item: True)
    assert len(actions) == 1, actions
    assert actions[0].item.play_id == "p"
    return actions[0].kind


OVERNIGHT = [
    ((21, 59, 59), "start"),
    ((22, 0, 0), "refused"),  # the first minute is quiet
    ((22, 0, 59), "refused"),
    ((23, 59, 59), "refused"),
    ((0, 0, 0), "refused"),
    ((5, 59, 0), "refused"),  # the last minute is quiet
    ((5, 59, 59), "refused"),
    ((6, 0, 0), "start"),  # the end is not
    ((6, 0, 1), "start"),
    ((12, 0, 0), "start"),
]


@pytest.mark.parametrize(("hms", "expected"), OVERNIGHT, ids=[f"{h:02d}:{m:02d}:{s:02d}" for (h, m, s), _ in OVERNIGHT])
def test_overnight_span_edges(hms: tuple[int, int, int], expected: str) -> None:
    assert decide(["22:00-06:00"], local(*hms)) == expected


DAYTIME = [((12, 29, 59), "start"), ((12, 30, 0), "refused"), ((12, 59, 59), "refused"), ((13, 0, 0), "start")]


@pytest.mark.parametrize(("hms", "expected"), DAYTIME, ids=[f"{h:02d}:{m:02d}:{s:02d}" for (h, m, s), _ in DAYTIME])
def test_daytime_span_edges(hms: tuple[int, int, int], expected: str) -> None:
    assert decide(["12:30-13:00"], local(*hms)) == expected


def test_emergency_plays_at_every_edge_of_quiet_hours() -> None:
    for hms in ((22, 0, 0), (0, 0, 0), (5, 59, 59)):
        assert decide(["22:00-06:00"], local(*hms), "emergency") == "start", hms
    for priority in ("urgent", "normal", "background"):
        assert decide(["22:00-06:00"], local(22, 0), priority) == "refused", priority


def test_no_quiet_hours_and_an_empty_span_refuse_nothing() -> None:
    assert decide([], local(23, 0)) == "start"
    assert decide(["22:00-22:00"], local(22, 0)) == "start", "start == end is an empty span, not a whole day"


def test_several_spans_each_count() -> None:
    spans = parse_quiet_hours(["22:00-06:00", "12:30-13:00"])
    assert in_quiet_hours(spans, local(12, 30), CHINA)
    assert in_quiet_hours(spans, local(22, 0), CHINA)
    assert not in_quiet_hours(spans, local(13, 0), CHINA)
    assert not in_quiet_hours(spans, local(6, 0), CHINA)


def test_quiet_hours_are_local_time_not_utc() -> None:
    at = local(22, 0)  # 14:00 UTC
    assert in_quiet_hours(parse_quiet_hours(["22:00-06:00"]), at, CHINA)
    assert not in_quiet_hours(parse_quiet_hours(["22:00-06:00"]), at, 0)
    assert in_quiet_hours(parse_quiet_hours(["14:00-15:00"]), at, 0)


def test_the_span_crosses_midnight_on_every_day() -> None:
    for day in (1, 15, 30):
        assert decide(["23:00-01:00"], local(0, 30, day=day)) == "refused"
        assert decide(["23:00-01:00"], local(1, 0, day=day)) == "start"
        assert decide(["23:00-01:00"], local(22, 59, 59, day=day)) == "start"


def test_a_config_parses_its_spans_and_refuses_bad_ones(tmp_path: object) -> None:
    config = AgentConfig(
        speaker_id="s1", broker_url="mqtt://127.0.0.1:1", username=None, password=None, topic_prefix="vb",
        regions=["r"], server_keys=["k"], state_dir=f"{tmp_path}/s", cache_dir=f"{tmp_path}/c",
        quiet_hours=["22:00-06:30"],
    )  # fmt: skip
    assert config.quiet_spans() == [(22 * 60, 6 * 60 + 30)]
    for bad in ("22-06", "22:00", "2200-0600", "quiet", "24:00-06:00", "22:60-06:00"):
        with pytest.raises(SpeakerError) as caught:
            parse_quiet_hours([bad])
        assert "静默时段" in caught.value.zh


# Queue order and wake-up times, exact at their edges (each one killed a mutmut survivor).
T = local(12, 0)
HORIZON = 0.25  # exact in binary, so `start == now + horizon` is exact too


def test_a_play_due_exactly_at_the_horizon_starts_and_one_expiring_now_is_not_missed() -> None:
    planner = Planner([], CHINA)
    planner.add(item("edge", T + HORIZON))
    assert [(a.kind, a.at) for a in planner.tick(T, HORIZON, lambda _i: True)] == [("start", T + HORIZON)]
    planner = Planner([], CHINA)
    late = item("late", T - 30)
    late.expires_at = T
    planner.add(late)
    assert [a.kind for a in planner.tick(T, HORIZON, lambda _i: True)] == ["start"], "expires_at is the last start"


def test_missed_and_refused_happen_at_their_instants() -> None:
    planner = Planner([], CHINA)
    stale = item("stale", T - 90)
    planner.add(stale)
    assert [(a.kind, a.at) for a in planner.tick(T, HORIZON, lambda _i: True)] == [("missed", T)]
    quiet = Planner(parse_quiet_hours(["22:00-06:00"]), CHINA)
    quiet.add(item("night", local(23, 0)))
    actions = quiet.tick(local(23, 0) - 0.1, HORIZON, lambda _i: True)
    assert [(a.kind, a.at) for a in actions] == [("refused", local(23, 0))]


def test_readiness_is_asked_per_item() -> None:
    planner = Planner([], CHINA)
    planner.add(item("missing-media", T))
    planner.add(item("cached", T, seq=2))
    started = planner.tick(T, HORIZON, lambda i: i.play_id == "cached")
    assert [(a.kind, a.item.play_id) for a in started] == [("start", "cached")]


def test_equal_priority_goes_by_start_time_then_sequence() -> None:
    planner = Planner([], CHINA)
    planner.add(item("later-start-low-seq", T + 0.1, seq=1))
    planner.add(item("earlier-start-high-seq", T, seq=9))
    planner.add(item("earlier-start-low-seq", T, seq=3))
    order = []
    for _ in range(3):
        order += [a.item.play_id for a in planner.tick(T + 0.2, HORIZON, lambda _i: True) if a.kind == "start"]
        planner.finished()
    assert order == ["earlier-start-low-seq", "earlier-start-high-seq", "later-start-low-seq"]


def test_next_wake_times() -> None:
    planner = Planner([], CHINA)
    assert planner.next_wake(T, HORIZON) is None, "nothing queued: no wake-up"
    soon = item("soon", T + 0.1)  # already inside the horizon: only its expiry can wake the planner
    planner.add(soon)
    assert planner.next_wake(T, HORIZON) == soon.expires_at + 0.001
    edge = Planner([], CHINA)
    at_edge = item("edge", T + HORIZON)  # start - horizon == now: due now, not a future wake-up
    edge.add(at_edge)
    assert edge.next_wake(T, HORIZON) == at_edge.expires_at + 0.001
    later = Planner([], CHINA)
    later.add(item("later", T + 10))
    assert later.next_wake(T, HORIZON) == T + 10 - HORIZON


def test_a_verified_play_becomes_a_queue_item_field_by_field() -> None:
    play = Play(broadcast_id="b7", priority="urgent", media_url="http://m/x.mp3", sha256="c" * 64, duration_ms=1500,
                start_at=T, expires_at=T + 30, volume=55, repeat=2, repeat_gap_ms=700, title="防汛")  # fmt: skip
    made = PlayItem.from_play(play, play_id="p7", command_id="c7", seq=42, default_expiry=T + 999, source="command")
    assert made.to_dict() == {
        "play_id": "p7", "command_id": "c7", "broadcast_id": "b7", "priority": "urgent",
        "media_url": "http://m/x.mp3", "sha256": "c" * 64, "duration_ms": 1500, "start_at": T,
        "expires_at": T + 30, "volume": 55, "repeat": 2, "repeat_gap_ms": 700, "seq": 42, "source": "command",
        "title": "防汛",
    }  # fmt: skip
    open_ended = Play(broadcast_id="b8", priority="normal", media_url="u", sha256="d" * 64, duration_ms=1, start_at=T)
    item8 = PlayItem.from_play(
        open_ended, play_id="s:1", command_id="i1", seq=0, default_expiry=T + 99, source="schedule"
    )
    assert item8.expires_at == T + 99, "no latest start: the command's expiry"
    assert PlayItem.from_dict({**made.to_dict(), "unknown_later_field": 1}) == made, "a newer state file still loads"


def test_a_cancelled_play_leaves_the_queue() -> None:
    planner = Planner([], CHINA)
    planner.add(item("keep", T, seq=1))
    planner.add(item("cancel", T, "urgent", seq=2))
    removed = planner.remove("cancel")
    assert removed is not None
    assert removed.play_id == "cancel"
    assert planner.remove("cancel") is None
    assert [(a.kind, a.item.play_id) for a in planner.tick(T, HORIZON, lambda _i: True)] == [("start", "keep")]
