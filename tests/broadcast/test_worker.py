"""The worker on a real broker with real processes: restarts lose nothing, receipts only move deliveries forward."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import Broadcast, Delivery, Speaker
from broadcast.services import receipts
from broadcast.services.receipts import ReceiptIn
from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.conftest import free_port, make_app
from tests.e2e.procs import Proc, exe, timeline, wait_for

AGENT = "spk-42122410420101-1"


@dataclass
class Server:
    """A deployment without `broadcast run`: an embedded broker and the web app in this process, and
    `broadcast worker` and `speaker-agent` as real processes started and killed by the test."""

    tmp: Path
    app: Any
    broker: Any
    web: Any
    env: dict[str, str]
    token: str
    procs: list[Proc] = field(default_factory=list)

    @property
    def platform(self) -> Any:
        """The web tier's platform."""
        return self.app.extensions["platform"]

    def worker(self, name: str = "worker", **env: str) -> Proc:
        """Start a `broadcast worker` process."""
        proc = Proc([exe("broadcast"), "worker"], self.tmp / f"{name}.log", env={**self.env, **env})
        self.procs.append(proc)
        return proc

    def agent(self, speaker_id: str) -> Proc:
        """Provision a speaker and start a real agent for it, writing what it plays to a file sink."""
        from broadcast.services import provisioning

        with self.platform.db.transaction() as session:
            config = provisioning.provision(session, self.platform, speaker_id, state_root=self.tmp / "agents")
        path = self.tmp / f"{speaker_id}.json"
        path.write_text(config.to_json())
        proc = Proc(
            [exe("speaker-agent"), "run", "--config", str(path), "--sink", str(self.sink(speaker_id))],
            self.tmp / f"{speaker_id}.log",
        )
        self.procs.append(proc)
        return proc

    def sink(self, speaker_id: str) -> Path:
        """Where a speaker's file sink writes."""
        return self.tmp / "sinks" / speaker_id

    def broadcast(self, **fields: Any) -> int:
        """A notice to the township through the API; returns the broadcast id."""
        client = self.app.test_client()
        clip = client.post("/api/v1/clips", json={"text": "请注意。"}, headers=auth(self.token)).get_json()
        body = {"clip_id": clip["id"], "targets": [HUANGSHA], **fields}
        created = client.post("/api/v1/broadcasts", json=body, headers=auth(self.token))
        assert created.status_code == 201, created.get_json()
        return int(created.get_json()["id"])

    def delivery(self, broadcast_id: int, speaker_id: str) -> Delivery:
        """One delivery as the database has it now."""
        with self.platform.db.transaction() as session:
            query = select(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id == speaker_id)
            return session.scalars(query).one()

    def online(self, speaker_id: str) -> bool:
        """What the worker recorded of a speaker's connection."""
        with self.platform.db.transaction() as session:
            speaker = session.get(Speaker, speaker_id)
            return bool(speaker and speaker.online)


def server_stack(tmp: Path, database_url: str, **settings: Any) -> Server:
    """Start the broker and the web tier; the caller starts workers and agents."""
    from broadcast.runner import web_server
    from speakers.broker import EmbeddedBroker

    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    web_port = free_port()
    values = {
        "DATABASE_URL": database_url,
        "MQTT_URL": broker.url,
        "TOPIC_PREFIX": "wk" + secrets.token_hex(4),
        "PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "QUIET_HOURS": "",
        "TTS_ENGINES": "espeak",
        "MQTT_TIMEOUT_S": "3",
        "START_LEAD_MS": "1500",
        "LEASE_POLL_S": "0.5",
        **{k: str(v) for k, v in settings.items()},
    }
    instance = tmp / "instance"
    app = make_app(instance, database_url, **values)
    token = seed_county(app)["admin"]
    web = web_server(app, "127.0.0.1", web_port, 4)
    threading.Thread(target=web.run, name="test-web", daemon=True).start()
    env = {"BROADCAST_INSTANCE": str(instance), **{f"BROADCAST_{k}": str(v) for k, v in values.items()}}
    return Server(tmp, app, broker, web, env, token)


def stop_stack(server: Server) -> None:
    """Stop every process, the web server and the broker."""
    for proc in reversed(server.procs):
        proc.stop(signal.SIGKILL if proc.alive() and proc.args[1] == "worker" else signal.SIGTERM)
    server.web.close()
    server.platform.close()
    server.broker.stop()


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    """The stack on SQLite."""
    stack = server_stack(tmp_path, sqlite_url)
    yield stack
    stop_stack(stack)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_receipts_sent_while_the_worker_is_down_are_not_lost(server: Server, how: int) -> None:
    server.agent(AGENT)
    worker = server.worker()
    wait_for(lambda: server.online(AGENT), 60, "the worker to see the agent online")
    # Negative check first: with the worker up, a notice ends finished.
    first = server.broadcast()
    wait_for(lambda: server.delivery(first, AGENT).state == "finished", 60, "the first notice to finish")
    worker.stop(how)
    assert not worker.alive()
    second = server.broadcast()

    def played() -> bool:
        return any(
            e["event"] == "finished" and e.get("broadcast_id") == str(second) for e in timeline(server.sink(AGENT))
        )

    wait_for(played, 60, "the agent to play while the worker is down")
    assert server.delivery(second, AGENT).state == "sent"  # nobody has read its receipts yet
    server.worker("worker-again")
    wait_for(lambda: server.delivery(second, AGENT).state == "finished", 60, "the queued receipts to be applied")
    with server.platform.db.transaction() as session:
        item = session.get(Broadcast, second)
        assert item is not None
        assert item.status in ("playing", "done")


def _broadcast(app: Any, tokens: dict[str, str]) -> int:
    client = app.test_client()
    clip = client.post("/api/v1/clips", json={"text": "请注意。"}, headers=auth(tokens["admin"])).get_json()
    created = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]}, headers=auth(tokens["admin"])
    )
    assert created.status_code == 201
    return created.get_json()["id"]


def test_receipts_only_move_deliveries_forward(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    broadcast_id = _broadcast(app, tokens)
    speaker = "spk-42122410420101-1"
    other = "spk-42122410420101-2"
    third = "spk-42122410420102-1"

    def receipt(who: str, event: str, reason: str | None = None, at: float = 100.0) -> ReceiptIn:
        return ReceiptIn(who, "c1", str(broadcast_id), event, at, reason)

    batch = [
        receipt(speaker, "started", at=10.0),
        receipt(speaker, "acknowledged", at=9.0),  # late: must not move it back
        receipt(speaker, "finished", at=20.0),
        receipt(speaker, "rejected", "replayed"),  # a duplicate copy: the first answer stands
        receipt(other, "refused", "quiet_hours"),
        receipt(third, "refused", "already_played"),
        ReceiptIn("spk-unknown", "c1", str(broadcast_id), "started", 10.0),  # no such delivery: ignored
    ]
    with platform.db.transaction() as session:
        found = receipts.preload(session, batch, set())
        assert len(found) == 3, "one query per broadcast finds every delivery the batch names"
        for item in batch:
            receipts.apply_receipt(session, item, found)
    with platform.db.transaction() as session:
        rows = {d.speaker_id: d for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id))}
        assert rows[speaker].state == "finished"
        assert rows[speaker].started_at == 10.0
        assert rows[speaker].finished_at == 20.0
        assert rows[other].state == "failed"
        assert rows[other].reason == "refused:quiet_hours"
        assert rows[third].state == "queued"
        assert session.get(Broadcast, broadcast_id) is not None
