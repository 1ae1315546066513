"""The production shape: two gunicorn web workers, one `broadcast worker`, an external broker, real agents."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import MQTT_URL, free_port
from tests.e2e.deployment import prepare
from tests.e2e.procs import Proc, exe, http, timeline, url_up, wait_for
from tests.requires import need

pytestmark = pytest.mark.e2e
TOWNSHIP = "421224104000"
AGENTS = ["spk-42122410420101-1", "spk-42122410420202-2"]


@pytest.fixture
def external_broker(tmp_path: Path) -> Iterator[str]:
    """BROADCAST_TEST_MQTT_URL, else a Mosquitto started here on a free port; skipped only without either."""
    if MQTT_URL:
        yield MQTT_URL
        return
    binary = shutil.which("mosquitto") or (
        Path("/usr/sbin/mosquitto") if Path("/usr/sbin/mosquitto").exists() else None
    )
    need(binary, "no external MQTT broker (set BROADCAST_TEST_MQTT_URL or install mosquitto)")
    assert binary
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = Proc([str(binary), "-c", str(conf)], tmp_path / "mosquitto.log")
    wait_for(lambda: _port_open(port), 10, "mosquitto")
    yield f"mqtt://127.0.0.1:{port}"
    proc.stop()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_two_web_workers_and_one_worker_deliver(tmp_path: Path, database_url: str, external_broker: str) -> None:
    from broadcast.models import Command

    deployment = prepare(tmp_path, AGENTS, DATABASE_URL=database_url, MQTT_URL=external_broker)
    env, token, base = deployment.env, deployment.token, deployment.base
    platform = deployment.platform
    deployment.procs += [
        Proc(
            [exe("gunicorn"), "-w", "2", "-b", f"127.0.0.1:{deployment.port}", "broadcast:create_app()"],
            tmp_path / "gunicorn.log",
            env=env,
        ),
        Proc([exe("broadcast"), "worker"], tmp_path / "worker.log", env=env),
    ]
    try:
        wait_for(lambda: url_up(base + "/api/v1/time"), 60, "gunicorn")
        for speaker_id in AGENTS:
            deployment.start_agent(speaker_id)
        status, clip = http("POST", base + "/api/v1/clips", token, {"text": "请注意。"})
        assert status == 201, clip
        results: list[tuple[int, Any]] = []

        def send() -> None:
            results.append(
                http(
                    "POST",
                    base + "/api/v1/broadcasts",
                    token,
                    {"clip_id": clip["id"], "targets": [TOWNSHIP], "volume": 100},
                )
            )

        wait_for(
            lambda: all(
                s["online"] for s in http("GET", base + "/api/v1/speakers", token)[1]["items"] if s["id"] in AGENTS
            ),
            60,
            "agents online",
        )
        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [s for s, _ in results] == [201] * 6, results
        ids = [body["id"] for _, body in results]

        def all_played() -> bool:
            return all(
                len([e for e in timeline(deployment.sink(a)) if e["event"] == "finished"]) >= len(ids) for a in AGENTS
            )

        wait_for(all_played, 90, "every agent to play every notice")

        def states() -> list[dict[str, str]]:
            bodies = [http("GET", f"{base}/api/v1/broadcasts/{broadcast_id}", token)[1] for broadcast_id in ids]
            return [{d["speaker_id"]: d["state"] for d in body["deliveries"]} for body in bodies]

        latest: list[dict[str, str]] = []

        def finished_on_server() -> bool:
            latest[:] = states()
            return all(s[a] == "finished" for s in latest for a in AGENTS)

        # the last finished receipts may still be on their way to the server when the sinks show the end
        with contextlib.suppress(AssertionError):
            wait_for(finished_on_server, 30, "every play finished on the server")
        assert finished_on_server(), latest
        with platform.db.transaction() as session:
            rows = session.scalars(select(Command)).all()
            seqs = [c.seq for c in rows]
            assert len(set(seqs)) == len(seqs) == 6
            assert all(c.published_at for c in rows)
            publishers = {c.publisher for c in rows}
        # Both web workers published (each has its own broker client id).
        assert len(publishers) >= 2, publishers
    finally:
        deployment.stop()
