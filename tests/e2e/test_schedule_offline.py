"""A reset speaker gets its upcoming plays in a signed snapshot and plays them on time with the server down."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import http, timeline, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SPEAKER = "spk-42122410420101-1"
VILLAGE = "421224104201"


def _synced(deployment: Deployment) -> bool:
    from broadcast.models import Speaker

    with deployment.platform.db.transaction() as session:
        return session.get(Speaker, SPEAKER).schedule_synced_at is not None


def _cached(deployment: Deployment, sha256: str) -> bool:
    """True when the agent's media cache holds the file."""
    cache = Path(json.loads(deployment.configs[SPEAKER].read_text())["cache_dir"])
    return (cache / sha256).is_file()


def _barrier(deployment: Deployment) -> str:
    """A play sent now and seen finished: anything due before it (a late duplicate) has had its turn."""
    _, barrier_id = _broadcast(deployment, "测试结束。", SPEAKER, time.time() + 2)
    wait_for(
        lambda: any(
            e["event"] == "finished" and e["broadcast_id"] == str(barrier_id)
            for e in timeline(deployment.sink(SPEAKER))
        ),
        60,
        "the barrier play",
    )
    return str(barrier_id)


def _broadcast(deployment: Deployment, text: str, target: str, start_at: float) -> tuple[dict, int]:
    clip = http("POST", deployment.base + "/api/v1/clips", deployment.token, {"text": text})[1]
    status, created = http(
        "POST",
        deployment.base + "/api/v1/broadcasts",
        deployment.token,
        {"clip_id": clip["id"], "targets": [target], "start_at": start_at, "volume": 100},
    )
    assert status == 201, created
    return clip, created["id"]


def test_snapshot_carries_the_schedule_through_an_outage(tmp_path: Path) -> None:
    from broadcast.models import Command

    deployment = prepare(tmp_path, [SPEAKER], SCHEDULE_PUSH_S="2", SCHEDULE_MIN_LEAD_S="5")
    try:
        server = deployment.start_server("server1")
        agent = deployment.start_agent(SPEAKER, "agent1")
        deployment.wait_online(SPEAKER)
        start_at = time.time() + 40
        clip, broadcast_id = _broadcast(deployment, "明天早上八点停水，请提前储水。", VILLAGE, start_at)
        # The device is reset: it forgets the play command it received, and comes back with an empty state.
        agent.stop()
        shutil.rmtree(tmp_path / "agents" / SPEAKER)
        wait_for(lambda: not deployment.online(SPEAKER), 120, "the speaker to be seen offline")
        deployment.start_agent(SPEAKER, "agent2")
        deployment.wait_online(SPEAKER)
        wait_for(lambda: _synced(deployment), 30, "the speaker to acknowledge its schedule snapshot")
        wait_for(lambda: _cached(deployment, clip["sha256"]), 30, "the snapshot's media in the speaker's cache")
        server.stop()  # broker, web and worker all gone before the start time
        assert time.time() < start_at - 2
        sink = deployment.sink(SPEAKER)
        wait_for(
            lambda: any(e["event"] == "finished" and e["broadcast_id"] == str(broadcast_id) for e in timeline(sink)),
            90,
            "the speaker to play from its schedule while the server is down",
        )
        started = [e for e in timeline(sink) if e["event"] == "started"]
        assert [e["broadcast_id"] for e in started] == [str(broadcast_id)]
        assert abs(started[0]["at"] - start_at) < 1.0, started[0]["at"] - start_at
        deployment.start_server("server2")
        wait_for(
            lambda: deployment.delivery(broadcast_id, SPEAKER)["state"] == "finished",
            60,
            "the receipts played offline to reach the server",
        )
        barrier = _barrier(deployment)
        assert [e["broadcast_id"] for e in timeline(sink) if e["event"] == "started"] == [str(broadcast_id), barrier]
        with deployment.platform.db.transaction() as session:
            assert "schedule" in set(session.scalars(select(Command.kind)))
    finally:
        deployment.stop()


def test_a_play_in_both_command_and_snapshot_plays_once(tmp_path: Path) -> None:
    deployment = prepare(tmp_path, [SPEAKER], SCHEDULE_PUSH_S="1", SCHEDULE_MIN_LEAD_S="2")
    try:
        deployment.start_server()
        deployment.start_agent(SPEAKER)
        deployment.wait_online(SPEAKER)
        _, broadcast_id = _broadcast(deployment, "请注意。", SPEAKER, time.time() + 10)
        wait_for(lambda: _synced(deployment), 20, "the snapshot carrying the same play")
        sink = deployment.sink(SPEAKER)
        wait_for(lambda: any(e["event"] == "finished" for e in timeline(sink)), 30, "the play")
        barrier = _barrier(deployment)  # a second copy would have started before the barrier
        started = [e for e in timeline(sink) if e["event"] == "started"]
        assert [e["broadcast_id"] for e in started] == [str(broadcast_id), barrier]
    finally:
        deployment.stop()
