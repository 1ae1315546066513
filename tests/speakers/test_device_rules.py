"""Device rules end to end: preemption, queue, expiry, quiet hours, emergency volume, repeat, stop, volume,
synchronized start. Checked on the file sink's timeline timestamps and WAV files, and on the receipts."""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speakers.protocol import Ping, Play, Stop, Target, Volume

from .conftest import GRID, TOWNSHIP, AgentRunner, Clip, ServerSide

HERE = [Target.region(GRID)]


def play(clip: Clip, media: Any, bid: str, priority: str = "normal", start_in: float = 0.4, **kw: Any) -> Play:
    return Play(broadcast_id=bid, priority=priority, media_url=media.url(clip.name), sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=time.time() + start_in, **kw)  # fmt: skip


def event(agent: AgentRunner, kind: str, bid: str) -> dict[str, Any]:
    found = [e for e in agent.timeline() if e["event"] == kind and e["broadcast_id"] == bid]
    assert len(found) == 1, (kind, bid, agent.timeline())
    return found[0]


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        return wav.getnframes() / wav.getframerate()


def test_higher_priority_preempts_and_emergency_plays_at_max_volume(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent(max_volume=90, default_volume=60)
    server.online(agent.id)
    server.send(play(clips["long"], media, "routine"), HERE)
    server.receipt(agent.id, "started", broadcast_id="routine")
    time.sleep(0.6)
    server.send(play(clips["alarm"], media, "flood", "emergency", start_in=0.4, volume=20), [Target.region(TOWNSHIP)])
    server.receipt(agent.id, "finished", broadcast_id="flood")
    preempted = server.receipt(agent.id, "preempted", broadcast_id="routine")
    assert preempted.detail["by"] == "flood"
    routine_start = event(agent, "started", "routine")
    cut = event(agent, "preempted", "routine")
    alarm = event(agent, "started", "flood")
    assert abs(cut["at"] - alarm["at"]) < 0.005, "the alarm begins the instant the routine play is cut"
    assert 0.8 < cut["at"] - routine_start["at"] < 1.6
    assert alarm["volume"] == 90, "emergency ignores the requested 20 and plays at the maximum"
    assert routine_start["volume"] == 60
    played = wav_seconds(agent.sink / cut["file"])
    assert abs(played - (cut["at"] - routine_start["at"])) < 0.05, "the sink holds only the audio actually played"
    assert played < clips["long"].duration_ms / 1000 - 1
    assert abs(wav_seconds(agent.sink / event(agent, "finished", "flood")["file"]) - 1.5) < 0.05


def test_equal_and_lower_priority_queue_and_stale_content_is_missed(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent()
    server.online(agent.id)
    server.send(play(clips["long"], media, "first", "urgent"), HERE)
    server.receipt(agent.id, "started", broadcast_id="first")
    server.send(play(clips["tiny"], media, "same", "urgent", start_in=0.1), HERE)
    server.send(play(clips["tiny"], media, "lower", "background", start_in=0.1), HERE)
    stale = play(clips["tiny"], media, "stale", "normal", start_in=0.1)
    server.send(Play(**{**stale.to_dict(), "expires_at": stale.start_at + 0.5}), HERE)
    server.receipt(agent.id, "finished", broadcast_id="lower", timeout=15)
    missed = server.receipt(agent.id, "missed", broadcast_id="stale")
    assert missed.reason == "expired"
    first_end = event(agent, "finished", "first")["at"]
    same_start = event(agent, "started", "same")["at"]
    assert first_end - 0.02 <= same_start < first_end + 0.3, "queued, then started right after"
    assert event(agent, "started", "lower")["at"] >= event(agent, "finished", "same")["at"] - 0.02
    assert not [e for e in agent.timeline() if e["broadcast_id"] == "stale" and e["event"] == "started"]
    assert not server.receipts.matching(lambda r: r.event == "preempted")


def _quiet_window_now() -> list[str]:
    local = time.gmtime(time.time() + 8 * 3600)
    start = (local.tm_hour * 60 + local.tm_min - 60) % 1440
    end = (local.tm_hour * 60 + local.tm_min + 60) % 1440
    return [f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"]


def test_quiet_hours_on_the_device_let_only_emergency_through(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent(quiet_hours=_quiet_window_now())
    server.online(agent.id)
    server.send(play(clips["tiny"], media, "midnight-news", "urgent"), HERE)
    refused = server.receipt(agent.id, "refused", broadcast_id="midnight-news")
    assert refused.reason == "quiet_hours"
    server.send(play(clips["tiny"], media, "typhoon", "emergency"), HERE)
    server.receipt(agent.id, "finished", broadcast_id="typhoon")
    played = {e["broadcast_id"] for e in agent.timeline() if e["event"] == "started"}
    assert played == {"typhoon"}
    assert len(list(agent.sink.glob("*.wav"))) == 1


def test_repeat_stop_and_volume(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent(max_volume=70)
    server.online(agent.id)
    server.send(Volume(95), [Target.speaker(agent.id)])
    server.receipt(agent.id, "acknowledged", detail={"volume": 70})
    server.send(play(clips["tiny"], media, "thrice", repeat=3, repeat_gap_ms=200), HERE)
    done = server.receipt(agent.id, "finished", broadcast_id="thrice")
    assert done.detail["played_ms"] == 3 * 400 + 2 * 200
    assert abs(wav_seconds(agent.sink / event(agent, "finished", "thrice")["file"]) - 1.6) < 0.02
    assert event(agent, "started", "thrice")["volume"] == 70
    server.send(play(clips["long"], media, "cancel-me"), HERE)
    server.receipt(agent.id, "started", broadcast_id="cancel-me")
    time.sleep(0.5)
    server.send(Stop("cancel-me"), HERE)
    stopped = server.receipt(agent.id, "stopped", broadcast_id="cancel-me")
    assert 300 < stopped.detail["played_ms"] < 2000
    assert not server.receipts.matching(lambda r: r.event == "finished" and r.broadcast_id == "cancel-me")
    server.send(Ping(), [Target.speaker(agent.id)])
    pong = server.receipt(agent.id, "pong")
    state = server.states.wait(lambda s: s.speaker_id == agent.id and s.at >= pong.at)[-1]
    assert state.volume == 70
    assert state.playing is None
    assert state.cache_bytes > 0
    assert state.agent_version


def test_speakers_of_a_grid_start_together(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agents = [make_agent(f"g{i}") for i in range(3)]
    for agent in agents:
        server.online(agent.id)
    time.sleep(1.2)  # a few clock samples
    command = play(clips["short"], media, "together", start_in=1.0)
    server.send(command, [Target.region(TOWNSHIP)])
    for agent in agents:
        server.receipt(agent.id, "finished", broadcast_id="together")
    starts = [event(a, "started", "together")["at"] for a in agents]
    assert max(starts) - min(starts) < 0.04, starts
    assert all(abs(s - command.start_at) < 0.04 for s in starts), "at the commanded instant, not on arrival"
