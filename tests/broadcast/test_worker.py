"""The worker's pieces on a real broker: republishing after an outage, receipts moving deliveries forward only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from broadcast.models import Broadcast, Command, Delivery
from broadcast.services import receipts
from broadcast.services.receipts import ReceiptIn
from broadcast.worker import republish
from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.conftest import free_port, make_app


def _broadcast(app: Any, tokens: dict[str, str]) -> int:
    client = app.test_client()
    clip = client.post("/api/v1/clips", json={"text": "请注意。"}, headers=auth(tokens["admin"])).get_json()
    created = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]}, headers=auth(tokens["admin"])
    )
    assert created.status_code == 201
    return created.get_json()["id"]


def test_commands_the_broker_missed_are_sent_again_as_new_commands(tmp_path: Path, sqlite_url: str) -> None:
    from speakers.broker import EmbeddedBroker
    from speakers.transport import connect

    port = free_port()
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{port}", TOPIC_PREFIX="rp")
    platform = app.extensions["platform"]
    broker = EmbeddedBroker("127.0.0.1", port)
    try:
        tokens = seed_county(app)
        broadcast_id = _broadcast(app, tokens)  # broker down: recorded, not sent
        with platform.db.transaction() as session:
            first = session.scalars(select(Command)).one()
            assert first.published_at is None
        broker.start()
        got: list[bytes] = []
        listener = connect(broker.url, client_id="listener")
        listener.subscribe(f"rp/cmd/region/{HUANGSHA}", lambda m: got.append(m.payload), qos=1)
        time.sleep(5.2)  # past the web tier's short back-off after a failed connection
        republish(platform)
        deadline = time.time() + 5
        while not got and time.time() < deadline:
            time.sleep(0.05)
        listener.close()
        assert len(got) == 1
        with platform.db.transaction() as session:
            rows = session.scalars(select(Command).order_by(Command.seq)).all()
            assert len(rows) == 2
            old, new = rows
            assert old.superseded_by == new.seq
            assert old.published_at is None
            assert new.published_at is not None
            assert new.command_id != old.command_id
            assert new.body == old.body
            states = set(session.scalars(select(Delivery.state).where(Delivery.broadcast_id == broadcast_id)))
            assert states == {"sent"}
        republish(platform)  # nothing left to retry
        with platform.db.transaction() as session:
            assert len(session.scalars(select(Command)).all()) == 2
    finally:
        broker.stop()
        platform.close()


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
