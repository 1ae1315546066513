"""A CAP alert end to end on a real broker, worker and speaker agents: preemption, area, update and cancel."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broadcast.alerts.triggers import sign
from tests.alerts.corpus import SENDER, AreaSpec, InfoSpec, cap, cap_time
from tests.broadcast.conftest import HUANGSHA, auth
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.e2e.procs import timeline, wait_for

pytestmark = pytest.mark.e2e
SECRET = "e2e-cap-secret-0123456789abcdef"
INSIDE = "spk-42122410420101-1"  # 黄沙铺镇
OUTSIDE = "spk-42122420520101-1"  # 大路乡
ROUTINE_TEXT = "各位村民请注意，现在播放普法宣传节目。" * 6


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    """Broker, web tier, worker and two agents (one inside the alert's area, one outside)."""
    # an 8 s tone: the speech is at hand long before it ends (the seamless follow is checked), on a loaded box too
    server = server_stack(tmp_path, sqlite_url, ALERT_HMAC_SECRET=SECRET, ALERT_REPEAT=1, ALERT_TONE_S=8)
    try:
        server.agent(INSIDE)
        server.agent(OUTSIDE)
        server.worker()
        wait_for(lambda: server.online(INSIDE) and server.online(OUTSIDE), 90, "both agents online")
        yield server
    finally:
        stop_stack(server)


def _events(server: Server, speaker: str, broadcast_id: int) -> list[str]:
    return [e["event"] for e in timeline(server.sink(speaker)) if e.get("broadcast_id") == str(broadcast_id)]


def _post(server: Server, body: bytes) -> dict[str, Any]:
    client = server.app.test_client()
    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(SECRET, body)}
    response = client.post("/api/v1/alerts", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_an_alert_preempts_routine_content_inside_its_area_only(stack: Server) -> None:
    client = stack.app.test_client()
    clip = client.post("/api/v1/clips", json={"text": ROUTINE_TEXT}, headers=auth(stack.token)).get_json()
    routine = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip["id"], "targets": ["421224000000"], "repeat": 3},
        headers=auth(stack.token),
    ).get_json()["id"]
    # the routine notice really plays on both speakers before the alert comes
    wait_for(lambda: "started" in _events(stack, INSIDE, routine), 60, "the routine notice to start inside")
    wait_for(lambda: "started" in _events(stack, OUTSIDE, routine), 60, "the routine notice to start outside")

    sent = datetime.now(UTC)
    area = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]
    first = _post(stack, cap(ident="E2E-1", sent=sent, infos=[InfoSpec(areas=area)]))
    assert first["action"] == "broadcast"
    alert_id = first["broadcast_id"]
    tone_id = client.get(f"/api/v1/alerts/{first['alert_id']}", headers=auth(stack.token)).get_json()[
        "tone_broadcast_id"
    ]
    wait_for(lambda: "started" in _events(stack, INSIDE, alert_id), 60, "the alert's speech to sound inside the area")
    wait_for(lambda: stack.delivery(routine, INSIDE).state == "preempted", 60, "the routine delivery preempted")
    # the tone sounded first and the speech followed it in the speaker's queue
    inside = timeline(stack.sink(INSIDE))
    tone_started = [e["at"] for e in inside if e.get("broadcast_id") == str(tone_id) and e["event"] == "started"]
    tone_done = [e["at"] for e in inside if e.get("broadcast_id") == str(tone_id) and e["event"] == "finished"]
    speech_started = [e["at"] for e in inside if e.get("broadcast_id") == str(alert_id) and e["event"] == "started"]
    assert tone_started
    assert tone_done
    assert speech_started
    assert tone_started[0] < tone_done[0] <= speech_started[0]
    speech_in = [e["at"] for e in inside if e.get("broadcast_id") == str(alert_id) and e["event"] == "acknowledged"]
    if speech_in[0] < tone_done[0] - 3:  # the speech was at hand well before the tone ended: it follows seamlessly
        assert speech_started[0] == pytest.approx(tone_done[0], abs=0.001)
    assert stack.delivery(routine, OUTSIDE).state in ("playing", "finished")  # outside: not interrupted

    ref = f"{SENDER},E2E-1,{cap_time(sent)}"
    cancel = _post(stack, cap(ident="E2E-2", msg_type="Cancel", references=ref, infos=[InfoSpec(areas=area)]))
    assert cancel["action"] == "cancelled"
    wait_for(lambda: "stopped" in _events(stack, INSIDE, alert_id), 60, "the stop to end the alert")
    notice = cancel["broadcast_id"]
    wait_for(lambda: "finished" in _events(stack, INSIDE, notice), 90, "the 解除 notice to play")
    assert _events(stack, OUTSIDE, alert_id) == []  # zero plays outside the area
    assert _events(stack, OUTSIDE, notice) == []
    view = client.get(f"/api/v1/alerts/{first['alert_id']}", headers=auth(stack.token)).get_json()
    assert view["state"] == "cancelled"
    assert [d["action"] for d in view["decisions"]] == ["received", "broadcast", "cancelled"]
