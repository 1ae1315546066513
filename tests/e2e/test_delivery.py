"""End to end, delivery you can trust: a speaker that was away gets the command by re-send and plays it once,
a speaker away through the whole window ends `missed`, and an emergency plays with the media URL dead."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import Delivery
from tests.conftest import MQTT_URL, free_port
from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import http, timeline, wait_for
from tests.requires import need

pytestmark = pytest.mark.e2e

TOWNSHIP = "421224104000"  # 黄沙铺镇
STEADY = "spk-42122410420101-1"  # online throughout
AWAY = "spk-42122410420302-2"  # its connection is down when the command is first published
NEVER = "spk-42122410420201-1"  # provisioned, offline through the whole window


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """The embedded broker always; the external Mosquitto when BROADCAST_TEST_MQTT_URL is set."""
    if request.param == "mosquitto":
        need(MQTT_URL, "BROADCAST_TEST_MQTT_URL not set (an external Mosquitto)")
    return {"MQTT_URL": MQTT_URL or ""} if request.param == "mosquitto" else {}


def _start(deployment: Deployment, *speakers: str) -> Deployment:
    deployment.start_server()
    for speaker_id in speakers:
        deployment.start_agent(speaker_id)
    deployment.wait_online(*speakers)
    return deployment


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str, broker_settings: dict[str, str]) -> Iterator[Deployment]:
    """`broadcast run` with the demo county and two running agents; a third speaker is never started."""
    settings = {"DATABASE_URL": sqlite_url, "COMMAND_TTL_S": "10", "RESEND_FIRST_S": "1", **broker_settings}
    deployment = prepare(tmp_path, [STEADY, AWAY, NEVER], **settings)
    try:
        yield _start(deployment, STEADY, AWAY)
    finally:
        deployment.stop()


def _notice(deployment: Deployment, text: str, **fields: Any) -> tuple[dict[str, Any], int]:
    status, clip = http("POST", deployment.base + "/api/v1/clips", deployment.token, {"text": text})
    assert status == 201, clip
    body = {"clip_id": clip["id"], "targets": [TOWNSHIP], **fields}
    status, created = http("POST", deployment.base + "/api/v1/broadcasts", deployment.token, body)
    assert status == 201, created
    return clip, int(created["id"])


def _started(deployment: Deployment, speaker_id: str, broadcast_id: int) -> list[dict[str, Any]]:
    events = timeline(deployment.sink(speaker_id))
    return [e for e in events if e["event"] == "started" and e.get("broadcast_id") == str(broadcast_id)]


def _resends(deployment: Deployment, broadcast_id: int, speaker_id: str) -> int:
    with deployment.platform.db.transaction() as session:
        query = select(Delivery.resends).where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id == speaker_id)
        return int(session.scalar(query) or 0)


def test_a_speaker_that_was_away_gets_the_command_by_resend_and_plays_it_once(stack: Deployment) -> None:
    away = next(p for p in stack.procs if str(stack.configs[AWAY]) in p.args)
    away.stop()
    wait_for(lambda: not stack.online(AWAY), 60, f"{AWAY} to be seen offline")
    start = time.time() + 15
    _clip, broadcast_id = _notice(stack, "请注意，这是一条补发测试。", start_at=start)
    wait_for(lambda: stack.delivery(broadcast_id, STEADY)["state"] == "acknowledged", 30, "the steady speaker's ack")
    # While it is away the outbox keeps trying its own topic, with back-off.
    wait_for(lambda: _resends(stack, broadcast_id, AWAY) >= 1, 30, "a re-send to the away speaker")
    # It comes back with a fresh session (as after a broker restart): the broker has nothing queued for it,
    # so only the outbox's re-send can bring it the command.
    config = json.loads(stack.configs[AWAY].read_text())
    stack.configs[AWAY].write_text(json.dumps({**config, "clean_session": True}))
    stack.start_agent(AWAY, name="away-again")
    for speaker_id in (STEADY, AWAY):
        wait_for(lambda s=speaker_id: stack.delivery(broadcast_id, s)["state"] == "finished", 60, f"{speaker_id}")
        assert len(_started(stack, speaker_id, broadcast_id)) == 1
        assert len(list(stack.sink(speaker_id).glob("*.wav"))) == 1, "played exactly once"
    # The speaker that never came back ends missed, with the reason, once the command expires; nothing hangs.
    wait_for(lambda: stack.delivery(broadcast_id, NEVER)["state"] == "missed", 60, "the absent speaker missed")
    assert stack.delivery(broadcast_id, NEVER)["reason"] == "offline_through_window"
    assert _started(stack, NEVER, broadcast_id) == []

    def done() -> dict[str, Any] | None:
        body = http("GET", f"{stack.base}/api/v1/broadcasts/{broadcast_id}", stack.token)[1]
        return body if body["status"] == "done" else None

    body = wait_for(done, 60, "the broadcast to be done")
    assert body["counts"]["finished"] == 2
    assert body["counts"]["missed"] == 10


@pytest.fixture
def dead_media(tmp_path: Path, sqlite_url: str, broker_settings: dict[str, str]) -> Iterator[Deployment]:
    """A deployment whose media URL answers nobody (the web tier speakers fetch from is down)."""
    settings = {
        "DATABASE_URL": sqlite_url,
        "COMMAND_TTL_S": "10",
        "PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        **broker_settings,
    }
    deployment = prepare(tmp_path, [STEADY], **settings)
    try:
        yield _start(deployment, STEADY)
    finally:
        deployment.stop()


def test_an_emergency_plays_with_its_media_inline_while_the_media_url_is_dead(dead_media: Deployment) -> None:
    # Negative first: a routine notice must be fetched, cannot be (the speaker retries until its window
    # closes), and ends without playing, with the reason.
    _clip, routine = _notice(dead_media, "例行通知，不会播出。")
    ended = {"failed", "missed"}
    wait_for(lambda: dead_media.delivery(routine, STEADY)["state"] in ended, 60, "the routine notice to end")
    assert dead_media.delivery(routine, STEADY)["reason"]
    assert _started(dead_media, STEADY, routine) == []
    clip, emergency = _notice(dead_media, "紧急通知，请立即撤离。", priority="emergency")
    wait_for(lambda: dead_media.delivery(emergency, STEADY)["state"] == "finished", 60, "the emergency to play")
    started = _started(dead_media, STEADY, emergency)
    assert len(started) == 1
    assert started[0]["sha256"] == clip["sha256"]
