"""A pushed schedule plays on time with the broker unreachable; after reconnecting the speaker reports what
it played and never plays anything twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.broker import EmbeddedBroker
from speakers.mosquitto_proc import MosquittoProcess, mosquitto_binary
from speakers.protocol import Play, ScheduledPlay, ScheduleSnapshot, Target
from tests.requires import need

from .conftest import GRID, AgentRunner, Clip, LinkProxy, ServerSide


def snapshot(clip: Clip, media: Any, first: float, second: float, name: str = "s1") -> ScheduleSnapshot:
    def item(n: int, start: float) -> ScheduledPlay:
        return ScheduledPlay(
            f"occ-{n}",
            Play(broadcast_id=f"morning-{n}", priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                 duration_ms=clip.duration_ms, start_at=start, expires_at=start + 30),
        )  # fmt: skip

    return ScheduleSnapshot(name, time.time(), time.time() + 86400, (item(1, first), item(2, second)))


def starts(agent: AgentRunner) -> list[tuple[str, float]]:
    return [(e["broadcast_id"], e["at"]) for e in agent.timeline() if e["event"] == "started"]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.05)


def cached(agent: AgentRunner, clip: Clip) -> bool:
    assert agent.agent is not None
    return bool(agent.call(lambda: agent.agent.cache.has(clip.sha256) and agent.agent.pcm.peek(clip.sha256)))


def test_schedule_plays_while_the_link_is_down_then_reports_once(
    server: ServerSide, link: LinkProxy, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent(broker_url=link.url, reconnect_max_s=1.0)
    server.online(agent.id)
    clip = clips["tiny"]
    t0 = time.time()
    plan = snapshot(clip, media, t0 + 1.5, t0 + 2.5)
    server.send(plan, [Target.speaker(agent.id)], expires_in=86400)
    ack = server.receipt(agent.id, "acknowledged")
    assert ack.detail == {"snapshot_id": "s1", "items": 2}
    wait_for(lambda: cached(agent, clip))
    link.down()
    server.states.wait(lambda s: s.speaker_id == agent.id and not s.online and s.will)  # the last will
    wait_for(lambda: len([e for e in agent.timeline() if e["event"] == "finished"]) == 2, timeout=8)
    played = starts(agent)
    assert [b for b, _ in played] == ["morning-1", "morning-2"]
    for (_b, at), planned in zip(played, (t0 + 1.5, t0 + 2.5), strict=True):
        assert abs(at - planned) < 0.05, "on time, with no broker"
    assert not server.receipts.matching(lambda r: r.event == "started"), "nothing reached the server yet"
    link.up()
    for n in (1, 2):
        started = server.receipt(agent.id, "started", broadcast_id=f"morning-{n}", timeout=15)
        assert started.command_id == f"occ-{n}"
        assert started.detail["source"] == "schedule"
        server.receipt(agent.id, "finished", broadcast_id=f"morning-{n}")
    # the server, unsure what happened while the link was down, pushes the same schedule again and a play
    server.send(snapshot(clip, media, t0 + 1.5, t0 + 2.5, "s2"), [Target.speaker(agent.id)], expires_in=86400)
    again = server.receipt(agent.id, "acknowledged", detail={"snapshot_id": "s2", "items": 0})
    assert again
    retry = Play(broadcast_id="morning-1", priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                 duration_ms=clip.duration_ms, start_at=time.time())  # fmt: skip
    server.send(retry, [Target.region(GRID)])
    assert server.receipt(agent.id, "refused", broadcast_id="morning-1").reason == "already_played"
    time.sleep(0.5)
    assert len(starts(agent)) == 2, "nothing played twice"
    assert len(server.receipts.matching(lambda r: r.event == "started" and r.speaker_id == agent.id)) == 2


@pytest.fixture(params=["embedded", "mosquitto"])
def stoppable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A broker this test may stop and start again on the same port."""
    if request.param == "embedded":
        broker: Any = EmbeddedBroker()
    else:
        need(mosquitto_binary(), "mosquitto not installed (Debian package mosquitto)")
        broker = MosquittoProcess(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def test_schedule_plays_with_the_broker_stopped(
    stoppable: Any, topic_prefix: str, server_key: Any, tmp_path: Path, clips: dict[str, Clip], media: Any
) -> None:
    from speakers.config import AgentConfig

    from .conftest import REGIONS

    server = ServerSide(stoppable.url, topic_prefix, server_key)
    config = AgentConfig(
        speaker_id=f"offline-{topic_prefix}", broker_url=stoppable.url, username=None, password=None,
        topic_prefix=topic_prefix, regions=REGIONS, server_keys=[server_key.public_b64()],
        state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", reconnect_max_s=1.0,
    )  # fmt: skip
    agent = AgentRunner(config, tmp_path / "sink").start()
    try:
        server.online(agent.id)
        clip = clips["tiny"]
        t0 = time.time()
        # Both plays must fall after the broker is gone, and stopping it can take up to SHUTDOWN_S (5 s) on a
        # busy machine: a play while it still answers hands its receipts to the broker, not to the outbox.
        first = t0 + 8.0
        server.send(snapshot(clip, media, first, first + 0.8), [Target.speaker(agent.id)], expires_in=86400)
        server.receipt(agent.id, "acknowledged")
        wait_for(lambda: cached(agent, clip))
        stoppable.stop()
        wait_for(lambda: not agent.call(lambda: agent.agent.client.connected))  # type: ignore[union-attr]
        assert time.time() < first, "the broker must be gone before the first play for this test to mean much"
        assert starts(agent) == []
        wait_for(lambda: len([e for e in agent.timeline() if e["event"] == "finished"]) == 2, timeout=first - t0 + 8)
        # On time without the broker: not before its second, and late only by the scheduling delay of a busy
        # machine (0.2 s seen with both cores loaded), far from waiting for the broker, which is still down.
        offsets = [at - first for _b, at in starts(agent)]
        assert [b for b, _at in starts(agent)] == ["morning-1", "morning-2"]
        assert all(-0.05 < got - want < 0.5 for got, want in zip(offsets, [0.0, 0.8], strict=True)), offsets
        assert agent.call(lambda: len(agent.agent.outbox)) >= 4, "receipts wait in the outbox"  # type: ignore[union-attr]
        stoppable.start()
        wait_for(lambda: agent.call(lambda: agent.agent.client.connected), timeout=15)  # type: ignore[union-attr]
        wait_for(lambda: agent.call(lambda: len(agent.agent.outbox)) == 0, timeout=10)  # type: ignore[union-attr]
        time.sleep(0.5)
        assert len(starts(agent)) == 2
    finally:
        agent.stop()
        server.close()
