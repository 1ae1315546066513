"""End to end: server, broker and real agent processes; a text notice reaches exactly one township."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MQTT_URL
from tests.e2e.deployment import prepare
from tests.e2e.procs import exe, http, timeline, wait_for
from tests.meter import measure
from tests.requires import need

pytestmark = pytest.mark.e2e

TOWNSHIP = "421224104000"  # 黄沙铺镇
# Two speakers of the township in different villages, one of the other township, one township speaker offline.
RUNNING = ["spk-42122410420101-1", "spk-42122410420302-2", "spk-42122420520101-1"]
OFFLINE = "spk-42122410420201-1"


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """The embedded broker always; the external Mosquitto when BROADCAST_TEST_MQTT_URL is set."""
    if request.param == "mosquitto":
        need(MQTT_URL, "external MQTT broker: set BROADCAST_TEST_MQTT_URL=mqtt://host:port")
    return request.param


@pytest.fixture
def stack(tmp_path: Path, database_url: str, broker_kind: str) -> Iterator[dict[str, Any]]:
    """`broadcast run` (web, worker, broker) with the demo county seeded and three real agents."""
    settings = {"DATABASE_URL": database_url, "COMMAND_TTL_S": "8"}
    if broker_kind == "mosquitto":
        settings["MQTT_URL"] = MQTT_URL or ""
    deployment = prepare(tmp_path, RUNNING, **settings)
    try:
        deployment.start_server()
        for speaker_id in RUNNING:
            deployment.start_agent(speaker_id)
        deployment.wait_online(*RUNNING)
        yield {
            "base": deployment.base,
            "token": deployment.token,
            "sinks": {s: deployment.sink(s) for s in RUNNING},
            "env": deployment.env,
        }
    finally:
        deployment.stop()


def test_text_notice_reaches_exactly_one_township(stack: dict[str, Any]) -> None:
    base, token = stack["base"], stack["token"]
    status, clip = http(
        "POST", base + "/api/v1/clips", token, {"text": "各位村民请注意，今天下午14:30有8级大风，请加固门窗。"}
    )
    assert status == 201, clip
    status, created = http(
        "POST", base + "/api/v1/broadcasts", token, {"clip_id": clip["id"], "targets": [TOWNSHIP], "volume": 100}
    )
    assert status == 201, created

    def finished() -> dict[str, Any] | None:
        _, body = http("GET", f"{base}/api/v1/broadcasts/{created['id']}", token)
        states = {d["speaker_id"]: d["state"] for d in body["deliveries"]}
        running_here = [s for s in RUNNING if s.startswith("spk-421224104")]
        return body if all(states.get(s) == "finished" for s in running_here) else None

    body = wait_for(finished, 60, "the township's running speakers to finish")
    states = {d["speaker_id"]: d for d in body["deliveries"]}
    assert len(states) == 12
    assert all(s.startswith("spk-421224104") for s in states)
    assert "spk-42122420520101-1" not in states
    # The offline speaker is never reported as played.
    assert states[OFFLINE]["state"] in ("queued", "sent", "missed")
    assert states[OFFLINE]["started_at"] is None
    for speaker_id, sink in stack["sinks"].items():
        events = timeline(sink)
        started = [e for e in events if e["event"] == "started" and e["broadcast_id"] == str(created["id"])]
        wavs = sorted(sink.glob("*.wav"))
        if speaker_id.startswith("spk-421224104"):
            assert len(started) == 1, events
            assert started[0]["sha256"] == clip["sha256"]
            assert len(wavs) == 1
            reading = measure(wavs[0])
            assert abs(reading.integrated - -16.0) <= 1.0, reading
            assert abs(reading.duration * 1000 - clip["duration_ms"]) < 300
            delivery = states[speaker_id]
            assert delivery["started_at"] <= delivery["finished_at"]
        else:
            assert started == []
            assert wavs == []
    # A barrier for the speaker of the other township: a play sent to it afterwards arrives and plays, so the
    # township's command had every chance to reach it first (and did not).
    other = "spk-42122420520101-1"
    status, barrier = http("POST", base + "/api/v1/broadcasts", token, {"clip_id": clip["id"], "targets": [other]})
    assert status == 201, barrier

    def barrier_played() -> list[str]:
        return [e["broadcast_id"] for e in timeline(stack["sinks"][other]) if e["event"] == "finished"]

    assert wait_for(barrier_played, 60, "the barrier play on the other township's speaker") == [str(barrier["id"])]
    # Both township speakers started together (same absolute start time).
    starts = [d["started_at"] for sid, d in states.items() if sid in RUNNING]
    assert max(starts) - min(starts) < 0.5

    # The offline speaker's delivery turns missed once the command expires, and is still not played.
    def missed() -> bool:
        _, again = http("GET", f"{base}/api/v1/broadcasts/{created['id']}", token)
        return any(d["speaker_id"] == OFFLINE and d["state"] == "missed" for d in again["deliveries"])

    wait_for(missed, 40, "the offline delivery to be marked missed")
    _, speakers = http("GET", base + "/api/v1/speakers", token)
    assert {s["id"]: s["online"] for s in speakers["items"]}[OFFLINE] is False


def test_say_from_the_shell_waits_for_the_counts(stack: dict[str, Any]) -> None:
    import subprocess

    result = subprocess.run(
        [exe("broadcast"), "say", "请注意，这是一条测试广播。", "--to", TOWNSHIP, "--wait", "--timeout", "90"],
        env={**os.environ, **stack["env"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].isdigit()
    counts = dict(part.split("=") for part in lines[-1].split())
    assert counts == {"finished": "2", "missed": "10"}, counts
