"""Delivery you can trust, server side: commands checked before they are stored, the outbox re-sends to each
speaker that has not acknowledged (same id, same sequence) until it expires, and every delivery ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.errors import BroadcastError
from broadcast.models import Broadcast, Clip, Command, Delivery
from broadcast.platform import Platform
from broadcast.services import commands, receipts
from broadcast.services.receipts import ReceiptIn
from broadcast.worker import republish, resend
from speakers.schema import validate
from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.conftest import free_port, make_app, wait_for
from tests.sql import recorded_statements

SPEAKER = "spk-42122410420101-1"
OTHER = "spk-42122410420101-2"


class Listener:
    """A real MQTT client recording every command published on the topics it subscribes to."""

    def __init__(self, url: str, topics: list[str]) -> None:
        from speakers.transport import connect

        self.got: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.transport = connect(url, client_id="listener-" + str(free_port()))
        for topic in topics:
            self.transport.subscribe(topic, self._on, qos=1)

    def _on(self, message: Any) -> None:
        body = json.loads(json.loads(message.payload)["body"])
        with self._lock:
            self.got.append((message.topic, body))

    def on(self, topic_end: str) -> list[dict[str, Any]]:
        """Command bodies received on topics ending with `topic_end`."""
        with self._lock:
            return [body for topic, body in self.got if topic.endswith(topic_end)]

    def close(self) -> None:
        """Disconnect."""
        self.transport.close()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[dict[str, Any]]:
    """An app on a real embedded broker, its seeded county, and a second platform playing the worker."""
    from speakers.broker import EmbeddedBroker

    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    prefix = "ob" + str(port)
    app = make_app(
        tmp_path / "i", database_url, MQTT_URL=broker.url, TOPIC_PREFIX=prefix, MQTT_TIMEOUT_S=3, START_LEAD_MS=2000
    )
    tokens = seed_county(app)
    web = app.extensions["platform"]
    worker = Platform.from_settings(tmp_path / "i", dict(web.settings))
    listener = Listener(broker.url, [f"{prefix}/cmd/region/#", f"{prefix}/cmd/speaker/#"])
    try:
        yield {"app": app, "tokens": tokens, "web": web, "worker": worker, "broker": broker, "listener": listener}
    finally:
        listener.close()
        worker.close()
        web.close()
        broker.stop()


def _clip(app: Any, token: str, **fields: Any) -> dict[str, Any]:
    response = app.test_client().post("/api/v1/clips", json={"text": "请注意。", **fields}, headers=auth(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _broadcast(app: Any, token: str, clip_id: int, **fields: Any) -> int:
    response = app.test_client().post(
        "/api/v1/broadcasts", json={"clip_id": clip_id, "targets": [HUANGSHA], **fields}, headers=auth(token)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_an_overlong_title_is_a_clear_error_and_nothing_is_stored(tmp_path: Path, database_url: str) -> None:
    app = make_app(tmp_path / "i", database_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    platform = app.extensions["platform"]
    try:
        tokens = seed_county(app)
        client = app.test_client()
        ok = client.post("/api/v1/clips", json={"text": "请注意。", "title": "题" * 200}, headers=auth(tokens["admin"]))
        assert ok.status_code == 201, ok.get_json()  # the longest allowed title works, on both databases
        for lang in ("zh", "en"):
            bad = client.post(
                "/api/v1/clips", json={"text": "另一条通知。", "title": "题" * 201}, headers=auth(tokens["admin"], lang)
            )
            # The request schema refuses it (422) before the service would (400); never a 500, never stored.
            assert bad.status_code in (400, 422), bad.get_json()
            assert bad.get_json()["error"]["code"] == "title_too_long"
            assert "200" in bad.get_json()["error"]["message"]
        with platform.db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Clip)) == 1
        broadcast_id = _broadcast(app, tokens["admin"], ok.get_json()["id"])
        with platform.db.transaction() as session:
            command = session.scalars(select(Command).where(Command.broadcast_id == broadcast_id)).one()
            assert command.body["body"]["title"] == "题" * 200
    finally:
        platform.close()


def test_a_command_speakers_would_reject_is_refused_before_it_is_stored(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    platform = app.extensions["platform"]
    try:
        tokens = seed_county(app)
        clip = _clip(app, tokens["admin"])
        broadcast_id = _broadcast(app, tokens["admin"], clip["id"])
        with platform.db.transaction() as session:
            item = session.get(Broadcast, broadcast_id)
            row = session.get(Clip, clip["id"])
            assert item is not None
            assert row is not None
            row.title = "长" * 300  # e.g. a row written before titles were checked: cut, with an ellipsis
            body = commands.play_body(item, row, secret="s", public_url="http://x", url_ttl_s=60)
            assert body["title"] == "长" * 199 + "…"
            validate(body, "play")
            before = session.scalar(select(func.count()).select_from(Command))
            with pytest.raises(BroadcastError) as caught:
                commands.issue(session, kind="play", body={**body, "volume": 101}, targets=[f"region:{HUANGSHA}"],
                               expires_at=time.time() + 60, broadcast_id=item.id)  # fmt: skip
            assert caught.value.code == "invalid_command"
            assert caught.value.kind == "bad_request"
            assert "volume" in caught.value.en
            assert "终端协议" in caught.value.zh
            session.rollback()
        with platform.db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Command)) == before
    finally:
        platform.close()


def test_unacknowledged_speakers_get_the_same_command_again_until_it_expires(stack: dict[str, Any]) -> None:
    app, token, web, worker, listener = (stack[k] for k in ("app", "tokens", "web", "worker", "listener"))
    clip = _clip(app, token["admin"])
    broadcast_id = _broadcast(app, token["admin"], clip["id"])
    original = wait_for(lambda: listener.on(f"/region/{HUANGSHA}"), "the region publish", 10)[0]
    with web.db.transaction() as session:
        rows = session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id)).all()
        assert {d.state for d in rows} == {"sent"}
        assert len(rows) == 12
        sent_at = max(d.next_resend_at or 0 for d in rows) - web.settings["RESEND_FIRST_S"]
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        expires_at = item.expires_at
    # Nothing is due before the first back-off has passed.
    assert resend(worker, now=sent_at + 1) == 0
    # One speaker acknowledges: only the eleven others get the command again, on their own topics.
    with web.db.transaction() as session:
        ack = [ReceiptIn(SPEAKER, original["id"], str(broadcast_id), "acknowledged", time.time())]
        receipts.apply_receipt(session, ack[0], receipts.preload(session, ack, set()))
    with recorded_statements(worker.db.engine) as statements:
        assert resend(worker, now=sent_at + 3.5) == 11
    queries = len(statements)
    assert queries <= 8, statements  # a few queries for a whole pass, not one per delivery
    copies = wait_for(lambda: listener.on(f"/speaker/{OTHER}"), "a re-send to a speaker topic", 10)
    assert copies[0] == original, "a re-send is the identical command: same id, same sequence, same body"
    assert listener.on(f"/speaker/{SPEAKER}") == []
    with web.db.transaction() as session:
        by_speaker = {
            d.speaker_id: d for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id))
        }
        assert by_speaker[OTHER].resends == 1
        assert by_speaker[OTHER].next_resend_at == pytest.approx(sent_at + 3.5 + 6)  # 3 s, then 6, 12 ... 60
        assert by_speaker[SPEAKER].resends == 0
    assert commands.backoff(10, 3, 60) == 60
    assert resend(worker, now=sent_at + 5) == 0, "not due again before its back-off"
    # Positive first, then the negative: once the command expired it is never sent again.
    assert resend(worker, now=sent_at + 10) == 11
    assert resend(worker, now=expires_at + 1) == 0
    with web.db.transaction() as session:
        assert receipts.expire_deliveries(session, expires_at + 1) == 12
    with web.db.transaction() as session:
        states = {
            (d.state, d.reason) for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id))
        }
        assert states == {("missed", "offline_through_window"), ("missed", "no_receipt_after_ack")}


def test_no_speaker_is_asked_again_while_receipts_wait_in_the_worker(stack: dict[str, Any]) -> None:
    """A backlog of receipts (a county answering at once) holds the re-sends: only silence seen is re-sent."""
    app, token, web, worker, listener = (stack[k] for k in ("app", "tokens", "web", "worker", "listener"))
    clip = _clip(app, token["admin"])
    broadcast_id = _broadcast(app, token["admin"], clip["id"])
    wait_for(lambda: listener.on(f"/region/{HUANGSHA}"), "the region publish", 10)
    with web.db.transaction() as session:
        rows = session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id)).all()
        due_at = max(d.next_resend_at or 0 for d in rows)
    # The worker last had an empty inbox before the re-sends fell due: the silence is not seen yet.
    assert resend(worker, now=due_at + 5, caught_up_at=lambda: due_at - 0.1) == 0
    assert listener.on(f"/speaker/{OTHER}") == []
    with web.db.transaction() as session:
        assert {d.resends for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id))} == {
            0
        }
    # Once the inbox was empty after they fell due, every silent speaker is asked again.
    assert resend(worker, now=due_at + 5, caught_up_at=lambda: due_at + 0.1) == 12
    wait_for(lambda: listener.on(f"/speaker/{OTHER}"), "a re-send to a speaker topic", 10)


def test_a_command_the_web_tier_never_published_goes_out_as_it_is(tmp_path: Path, sqlite_url: str) -> None:
    from speakers.broker import EmbeddedBroker

    port = free_port()
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{port}", TOPIC_PREFIX="rp")
    web = app.extensions["platform"]
    broker = EmbeddedBroker("127.0.0.1", port)
    worker: Platform | None = None
    listener: Listener | None = None
    try:
        tokens = seed_county(app)
        clip = _clip(app, tokens["admin"])
        first = _broadcast(app, tokens["admin"], clip["id"])  # broker down: recorded, not published
        second = _broadcast(app, tokens["admin"], clip["id"])
        with web.db.transaction() as session:
            old = session.scalars(select(Command).where(Command.broadcast_id == first)).one()
            assert old.published_at is None
            # Many commands issued since the first: it may have left a speaker's anti-replay window.
            session.add(Command(seq=old.seq + commands.SAFE_SEQ_AGE, command_id="filler", kind="ping",
                                body={}, topics=[], issued_at=0, expires_at=1))  # fmt: skip
            for command in session.scalars(select(Command).where(Command.broadcast_id.in_([first, second]))):
                command.issued_at -= 5  # the web worker died a while ago: the worker may take both over now
        broker.start()
        listener = Listener(broker.url, ["rp/cmd/region/#"])
        worker = Platform.from_settings(tmp_path / "i", dict(web.settings))
        republish(worker)
        got = wait_for(lambda: len(listener.on(HUANGSHA)) >= 2 and listener.on(HUANGSHA), "both publishes", 10)
        with web.db.transaction() as session:
            rows = {c.broadcast_id: c for c in session.scalars(select(Command).where(Command.superseded_by.is_(None)))}
            assert rows[second].published_at is not None
            assert rows[second].seq == old.seq + 1, "published as it is: same id, same sequence"
            assert rows[first].seq > old.seq + commands.SAFE_SEQ_AGE, "too old: superseded by a new command"
            assert rows[first].body == old.body
            assert {b["id"] for b in got} == {rows[first].command_id, rows[second].command_id}
            states = set(session.scalars(select(Delivery.state).where(Delivery.broadcast_id.in_([first, second]))))
            assert states == {"sent"}
        republish(worker)  # nothing left to publish
        with web.db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Command)) == 4
    finally:
        if listener is not None:
            listener.close()
        if worker is not None:
            worker.close()
        web.close()
        broker.stop()


def test_every_delivery_ends_in_the_state_the_speaker_reached(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    clip = _clip(app, tokens["admin"])
    broadcast_id = _broadcast(app, tokens["admin"], clip["id"])
    speakers = [SPEAKER, OTHER, "spk-42122410420102-1"]

    def receipt(who: str, event: str, reason: str | None = None) -> ReceiptIn:
        return ReceiptIn(who, "c1", str(broadcast_id), event, 100.0, reason)

    batch = [
        receipt(speakers[0], "rejected", "replayed"),  # a re-sent copy the speaker already had: not an answer
        receipt(speakers[1], "failed", "fetch_failed"),  # final: the speaker retried while the start was ahead
        receipt(speakers[2], "rejected", "malformed"),
    ]
    with platform.db.transaction() as session:
        found = receipts.preload(session, batch, set())
        for item in batch:
            receipts.apply_receipt(session, item, found)
    with platform.db.transaction() as session:
        rows = {d.speaker_id: d for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == broadcast_id))}
        assert rows[speakers[0]].state == "queued"
        assert (rows[speakers[1]].state, rows[speakers[1]].reason) == ("failed", "fetch_failed")
        assert (rows[speakers[2]].state, rows[speakers[2]].reason) == ("rejected", "malformed")


def test_say_wait_ends_at_its_timeout_with_the_counts_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from broadcast.cli import main

    monkeypatch.setenv("BROADCAST_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("BROADCAST_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")  # no broker: nothing ends
    monkeypatch.setenv("BROADCAST_TTS_ENGINES", "espeak")
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    result = runner.invoke(main, ["say", "请注意。", "--to", "spk-none", "--wait", "--timeout", "0"])
    assert result.exit_code == 2, result.output  # negative first: an unknown target is refused at once
    platform = Platform.from_settings(tmp_path / "instance")
    from broadcast import demo

    with platform.db.transaction() as session:
        demo.seed(session)
    platform.close()
    result = runner.invoke(main, ["say", "请注意。", "--to", HUANGSHA, "--wait", "--timeout", "0.5"])
    assert result.exit_code == 1, result.output
    assert "等待超时" in result.output
    assert "已播完 0，失败 0，错过 0，拒收 0，未结束 12" in result.output
    assert result.output.strip().splitlines()[-1] == "queued=12"
