"""The attention tone is in every speaker's cache before any alert, and sounds with the media server down."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.alerts.triggers import sign
from broadcast.models import Command
from broadcast.services import alert_tone
from tests.alerts.corpus import SENDER, AreaSpec, InfoSpec, cap, cap_time
from tests.broadcast.conftest import HUANGSHA, auth
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.conftest import free_port
from tests.e2e.procs import timeline, wait_for

pytestmark = pytest.mark.e2e
SECRET = "tone-cap-secret-0123456789abcdef"
SPEAKER = "spk-42122410420101-1"  # 黄沙铺镇


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    """Broker, web tier (the media server), worker pushing snapshots every second, one real agent."""
    # an 8 s tone: an Update and a Cancel are posted while the first tone still sounds, even on a loaded box
    server = server_stack(tmp_path, sqlite_url, ALERT_HMAC_SECRET=SECRET, ALERT_REPEAT=1, SCHEDULE_PUSH_S=1,
                          ALERT_CANCEL_NOTICE=0, ALERT_TONE_S=8)  # fmt: skip
    try:
        yield server
    finally:
        stop_stack(server)


def _tone_sha(server: Server) -> str:
    with server.platform.db.transaction() as session:
        return alert_tone.tone_clip(session, server.platform).sha256


def _cached(server: Server, sha: str) -> Path:
    return server.tmp / "agents" / SPEAKER / "cache" / sha


def _events(server: Server, broadcast_id: int) -> list[str]:
    return [e["event"] for e in timeline(server.sink(SPEAKER)) if e.get("broadcast_id") == str(broadcast_id)]


def test_snapshot_pins_the_tone_and_an_alert_plays_it_with_the_media_server_down(
    stack: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = _tone_sha(stack)
    stack.agent(SPEAKER)
    wait_for(lambda: _cached(stack, "").is_dir(), 60, "the agent's cache folder")
    # no snapshot yet (no worker): the tone is not in the cache
    assert not _cached(stack, sha).exists()
    stack.worker()
    wait_for(lambda: stack.online(SPEAKER), 90, "the agent online")
    wait_for(lambda: _cached(stack, sha).exists(), 60, "the snapshot's keep list to bring the tone into the cache")
    with stack.platform.db.transaction() as session:
        snapshots = session.scalars(select(Command).where(Command.kind == "schedule")).all()
        keep = [k for c in snapshots for k in c.body["body"].get("keep", [])]
    assert keep
    assert keep[0]["sha256"] == sha
    assert "/media/" in keep[0]["media_url"]

    # the media server is down from here on: every URL the alert hands out names a port nobody listens on
    monkeypatch.setitem(stack.platform.settings, "PUBLIC_URL", f"http://127.0.0.1:{free_port()}")
    area = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]
    body = cap(ident="TONE-1", sent=datetime.now(UTC), infos=[InfoSpec(areas=area)])
    client = stack.app.test_client()
    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(SECRET, body)}
    posted = client.post("/api/v1/alerts", data=body, headers=headers)
    assert posted.status_code == 202, posted.get_json()
    view = client.get(f"/api/v1/alerts/{posted.get_json()['alert_id']}", headers=auth(stack.token)).get_json()
    tone = view["tone_broadcast_id"]
    with stack.platform.db.transaction() as session:
        command = session.scalars(select(Command).where(Command.broadcast_id == tone)).one()
        assert command.body["body"]["sha256"] == sha
        assert "media_b64" not in command.body["body"]  # speakers hold the tone: no bytes through the broker
        assert command.body["body"]["media_url"].startswith(stack.platform.settings["PUBLIC_URL"])
    wait_for(lambda: "finished" in _events(stack, tone), 60, "the tone to play from the cache")
    assert "started" in _events(stack, tone)


def _post(server: Server, body: bytes) -> dict[str, Any]:
    client = server.app.test_client()
    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(SECRET, body)}
    response = client.post("/api/v1/alerts", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_a_cancel_after_an_update_within_the_tone_stops_that_tone(stack: Server) -> None:
    stack.agent(SPEAKER)
    stack.worker()
    wait_for(lambda: stack.online(SPEAKER), 90, "the agent online")
    sent = datetime.now(UTC)
    area = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]
    first = _post(stack, cap(ident="CHAIN-1", sent=sent, infos=[InfoSpec(areas=area)]))
    client = stack.app.test_client()
    tone = client.get(f"/api/v1/alerts/{first['alert_id']}", headers=auth(stack.token)).get_json()["tone_broadcast_id"]
    wait_for(lambda: "started" in _events(stack, tone), 60, "the first alert's tone to start")
    ref = f"{SENDER},CHAIN-1,{cap_time(sent)}"
    update = _post(stack, cap(ident="CHAIN-2", msg_type="Update", references=ref, infos=[InfoSpec(areas=area)]))
    assert update["action"] == "updated"
    assert stack.delivery(tone, SPEAKER).state != "failed"  # the Update leaves the tone playing
    cancel = _post(stack, cap(ident="CHAIN-3", msg_type="Cancel", references=ref, infos=[InfoSpec(areas=area)]))
    assert cancel["action"] == "cancelled"
    wait_for(lambda: "stopped" in _events(stack, tone), 60, "the Cancel to stop the first alert's tone")
    assert "finished" not in _events(stack, tone)
    assert "started" not in _events(stack, update["broadcast_id"])  # the updated speech never began
