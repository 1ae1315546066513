"""Fault injection against real processes on both brokers (issue 7): delivery you can trust, checked from the
speakers' sinks and the database.

A burst of 100 broadcasts (emergencies among them) goes through a web tier in a process of its own while, at
seeded random moments, the web tier, the worker holding the lease and the broker are killed with SIGKILL and
started again; a speaker's own account tries to take over another speaker's and the worker's client ids and to
leave wills on foreign topics; forged and foreign commands are published; one speaker is away through part of
the burst and comes back with its media cache corrupted; one is never there. Afterwards: zero lost plays for
the speakers that were online before expiry, zero duplicate plays, every delivery in a final state that matches
what the sink recorded, zero plays of a forged or foreign message. The embedded broker runs on SQLite, Mosquitto
on PostgreSQL when BROADCAST_TEST_DATABASE_URL is set (else SQLite). CHAOS_SEED replays a run.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, _pg_driver_url
from tests.e2e.faults import (
    Burst,
    Chaos,
    all_final,
    attack,
    corrupt_cache,
    deliveries,
    forge,
    kill_plan,
    make_clips,
    prepare,
    run_plan,
    tally,
)
from tests.e2e.procs import timeline, wait_for
from tests.requires import need

pytestmark = pytest.mark.e2e

A, B, C, D = "spk-42122410420101-1", "spk-42122410420101-2", "spk-42122410420102-1", "spk-42122410420302-2"
ABSENT = "spk-42122410420201-1"  # provisioned, never connects: every delivery to it ends missed
AGENTS = [A, B, C, D]
TTL_S = 30  # a routine play may start this long after its start time
COUNT, SPACING_S = 100, 0.3  # each speaker is busy about two thirds of the time: a backlog drains within the TTL


@pytest.fixture
def chaos_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite for the embedded broker; a private PostgreSQL schema for Mosquitto when one is given."""
    if request.node.callspec.params["kind"] == "embedded" or not PG_URL:
        yield f"sqlite:///{tmp_path / 'chaos.db'}"
        return
    base = _pg_driver_url(PG_URL)
    schema = "chaos_" + secrets.token_hex(5)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def chaos(request: pytest.FixtureRequest, tmp_path: Path, chaos_db: str) -> Iterator[Chaos]:
    """Broker, web, two workers (one standing by) and four agents, all real processes, all speakers online."""
    kind = request.node.callspec.params["kind"]
    if kind == "mosquitto":
        need(shutil.which("mosquitto"), "mosquitto is not installed")
    deployment = prepare(tmp_path, kind, [*AGENTS, ABSENT], database_url=chaos_db, COMMAND_TTL_S=str(TTL_S))
    try:
        deployment.broker.start()
        deployment.start_web()
        deployment.start_worker()
        deployment.start_worker()
        for speaker_id in AGENTS:
            deployment.start_agent(speaker_id)
        for speaker_id in AGENTS:
            wait_for(lambda s=speaker_id: deployment.online(s), 60, f"{speaker_id} online")
        yield deployment
    finally:
        print("\n".join(deployment.log))
        deployment.stop()
        if kind == "mosquitto":
            shutil.rmtree(deployment.broker.folder, ignore_errors=True)


@pytest.mark.parametrize("kind", ["embedded", "mosquitto"])
def test_a_burst_through_kills_and_attacks_loses_nothing_and_plays_nothing_twice(chaos: Chaos, kind: str) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**31))
    print(f"CHAOS_SEED={seed} broker={kind} database={chaos.env['BROADCAST_DATABASE_URL'].split(':')[0]}")
    rng = random.Random(seed)
    clips = make_clips(chaos)
    # The positive path first: with nothing broken, one notice finishes on every speaker.
    warm = Burst(1, AGENTS, [], 0.0, per_broadcast=len(AGENTS), emergency_every=10**6)
    warm.run(chaos, clips, rng)
    assert warm.error is None, warm.error
    wait_for(lambda: all_final(chaos), 90, "the first notice to end everywhere")
    first = tally(chaos, set(AGENTS))
    assert (first.finished, first.missed_offline, first.problems()) == (4, 0, {}), first.summary()

    # D goes away (its state and session kept), and its cached media is spoiled while it is away.
    chaos.agents[D].stop(signal.SIGTERM)
    chaos.note(f"{D} stopped")
    assert corrupt_cache(chaos, D) >= 1
    burst = Burst(COUNT, AGENTS, [ABSENT], SPACING_S, per_broadcast=1, per_emergency=2)
    span = COUNT * SPACING_S
    plan = kill_plan(rng, span * 0.8, kills=3)
    chaos.note(f"plan: {[(round(at, 1), what, round(down, 1)) for at, what, down in plan]}")
    extra = [
        (rng.uniform(1, span / 2), lambda: attack(chaos, A, B)),
        (rng.uniform(1, span / 2), lambda: forge(chaos, [A, B, C, A], ["990001", "990002", "990003", "990004"])),
        (span * 0.25, lambda: (chaos.start_agent(D), chaos.note(f"{D} back"))),
    ]
    sender = threading.Thread(target=burst.run, args=(chaos, clips, rng), name="burst")
    sender.start()
    run_plan(chaos, plan, extra)
    assert burst.done.wait(span + 180), "the burst did not end"
    assert burst.error is None, burst.error
    if chaos.web is None or not chaos.web.alive():
        chaos.start_web()
    assert any(w.alive() for w in chaos.workers)

    wait_for(lambda: all_final(chaos), TTL_S + span + 120, "every delivery to reach a final state")
    result = tally(chaos, set(AGENTS), burst.sent_at)
    print(result.summary())
    assert result.broadcasts >= COUNT + 1
    assert result.problems() == {}, result.summary()
    assert result.missed_offline == result.broadcasts - 1, "the absent speaker missed everything, without a sound"
    assert result.cache_repairs >= 1, "the corrupted cache was noticed and fetched again"
    assert len(chaos.forged) == 4, "the forged and foreign commands went out"
    assert chaos.attacks, "the attack ran"
    if kind == "embedded":  # Mosquitto's speaker listener renames the client to its user name instead of refusing
        assert all(code != 0 for code in chaos.attacks[0]), "no takeover and no foreign will was accepted"
    assert len(result.emergency_start_s) == 2 * (COUNT // 10), "every emergency played on its speakers"


def test_a_receipt_arriving_while_the_worker_stops_waits_for_the_next_worker(tmp_path: Path, sqlite_url: str) -> None:
    from broadcast.foreground import FOREGROUND
    from broadcast.platform import Platform
    from broadcast.worker import Worker
    from speakers import protocol
    from speakers.broker import EmbeddedBroker
    from speakers.messages import Receipt
    from speakers.mosquitto import write_mosquitto_files
    from speakers.transport import connect
    from tests.broadcast.conftest import HUANGSHA, auth, seed_county
    from tests.conftest import make_app

    # A broker with accounts: amqtt queues nothing for an anonymous persistent session.
    user, password, prefix = "vb-server", secrets.token_hex(8), "late" + secrets.token_hex(3)
    write_mosquitto_files(tmp_path / "broker", [], user, password, prefix=prefix)
    broker = EmbeddedBroker(password_file=tmp_path / "broker" / "passwd", server_users=[user])
    broker.start()
    settings = {"MQTT_URL": broker.url, "MQTT_USERNAME": user, "MQTT_PASSWORD": password, "TOPIC_PREFIX": prefix,
                "MQTT_TIMEOUT_S": "3", "DATABASE_URL": sqlite_url, "QUIET_HOURS": "",
                "TTS_ENGINES": "espeak"}  # fmt: skip
    app = make_app(tmp_path / "instance", sqlite_url, **settings)
    platform = app.extensions["platform"]
    token = seed_county(app)["admin"]
    speaker = connect(broker.url, client_id="spk-sender", username=user, password=password)
    first, late = "spk-42122410420101-1", "spk-42122410420101-2"

    def acknowledge(speaker_id: str) -> None:
        receipt = Receipt(speaker_id, "c1", str(broadcast_id), "acknowledged", time.time())
        speaker.publish(protocol.receipt_topic(prefix, speaker_id), protocol.dumps(receipt.to_dict()).encode(), qos=1)

    def state(speaker_id: str) -> str:
        from sqlalchemy import select

        from broadcast.models import Delivery

        with platform.db.transaction() as session:
            query = select(Delivery.state).where(
                Delivery.broadcast_id == broadcast_id, Delivery.speaker_id == speaker_id
            )
            return str(session.scalar(query))

    try:
        client = app.test_client()
        clip = client.post("/api/v1/clips", json={"text": "请注意。"}, headers=auth(token)).get_json()
        created = client.post("/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]},
                              headers=auth(token))  # fmt: skip
        broadcast_id = int(created.get_json()["id"])
        worker = Worker(Platform.from_settings(tmp_path / "instance", settings))
        worker.start()
        acknowledge(first)  # the positive path: a receipt while the worker runs is applied
        wait_for(lambda: state(first) == "acknowledged", 30, "the first receipt")
        consumer, transport = worker._consumer, worker._transport
        assert consumer is not None
        assert transport is not None
        # While this process launches an alert, the consumer and the writer stand aside: a receipt that arrives
        # meanwhile waits in memory, and is applied once the launch is over.
        middle = "spk-42122410420102-1"
        queued = "spk-42122410420102-2"
        with FOREGROUND.running():
            acknowledge(middle)
            wait_for(lambda: FOREGROUND.waiting > 0, 10, "the consumer to hold the receipt, standing aside")
            # a receipt already in the writer's inbox waits too
            worker.inbox.put(("receipt", Receipt(queued, "c1", str(broadcast_id), "acknowledged", time.time())))
            wait_for(lambda: FOREGROUND.waiting > 1, 10, "the writer to stand aside")
            assert (state(middle), state(queued)) == ("sent", "sent")
            assert not worker._drained(), "a receipt the consumer holds is not applied: the sweep must not judge yet"
        wait_for(lambda: state(middle) == state(queued) == "acknowledged", 30, "the receipts once the launch is over")
        stop = consumer.stop

        def late_receipt_fault(**options: bool) -> None:
            """Fault injection (the timing cannot be caused otherwise): a receipt lands just after the consumer
            stopped, while the worker may still be connected."""
            stop(**options)
            acknowledge(late)
            wait_for(lambda: consumer._queue.qsize() > 0 or not transport.connected, 10, "the late receipt")

        consumer.stop = late_receipt_fault  # type: ignore[method-assign]
        worker.stop()
        assert state(late) == "sent"
        again = Worker(Platform.from_settings(tmp_path / "instance", settings))
        again.start()
        try:
            wait_for(lambda: state(late) == "acknowledged", 30, "the late receipt to be applied")
        finally:
            again.stop()
    finally:
        speaker.close()
        platform.close()
        broker.close()


def test_receipts_lost_with_the_broker_are_asked_for_again(tmp_path: Path, sqlite_url: str) -> None:
    deployment = prepare(tmp_path, "embedded", [A], database_url=sqlite_url, COMMAND_TTL_S="120")
    try:
        deployment.broker.start()
        deployment.start_web()
        deployment.start_worker()
        deployment.start_agent(A)
        wait_for(lambda: deployment.online(A), 60, f"{A} online")
        clips = make_clips(deployment)

        def send() -> int:
            body = {"clip_id": clips["routine"], "targets": [A], "start_at": time.time() + 4}
            return int(deployment.post("/api/v1/broadcasts", body)["id"])

        def state(broadcast_id: int) -> str:
            return next(r[2] for r in deliveries(deployment) if r[0] == broadcast_id)

        def sink_finished(broadcast_id: int) -> bool:
            return any(e["event"] == "finished" and e.get("broadcast_id") == str(broadcast_id)
                       for e in timeline(deployment.sink(A)))  # fmt: skip

        first = send()  # the positive path: nothing lost, the receipts end it finished
        wait_for(lambda: state(first) == "finished", 60, "the first broadcast to finish")
        second = send()
        wait_for(lambda: state(second) == "acknowledged", 30, "the acknowledgement")
        deployment.workers[0].stop(signal.SIGKILL)  # nobody consumes: started and finished wait at the broker
        wait_for(lambda: sink_finished(second), 30, "the speaker to play it")
        deployment.broker.kill()  # and are lost with it
        deployment.broker.start()
        deployment.start_worker()
        wait_for(lambda: state(second) == "finished", 60, "the outbox to ask the speaker again")
        played = [e for e in timeline(deployment.sink(A)) if e["event"] == "started"]
        assert [e["broadcast_id"] for e in played] == [str(first), str(second)], "asking again never replays"
    finally:
        print("\n".join(deployment.log))
        deployment.stop()
