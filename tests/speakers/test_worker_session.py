"""The worker's broker session (issue 7): receipts sent while it restarts are kept and delivered, and a
worker whose session the broker lost notices and subscribes again."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakers import protocol
from speakers.broker import EmbeddedBroker
from speakers.messages import Receipt
from speakers.mosquitto import SpeakerAccess, write_mosquitto_files
from speakers.server import ReceiptConsumer
from speakers.transport import Transport, connect
from tests.conftest import wait_for
from tests.requires import need

from .conftest import MQTT_URL, Collector, LinkProxy


def _receipt(n: int) -> bytes:
    data = Receipt("spk-1", f"c{n}", "b1", "acknowledged", time.time()).to_dict()
    return protocol.dumps(data).encode()


def _consumer(transport: Transport, prefix: str, got: Collector) -> ReceiptConsumer:
    consumer = ReceiptConsumer(transport, prefix=prefix, on_receipt=got.add, on_state=lambda _s: None)
    consumer.start()
    return consumer


def _publish_until(speaker: Transport, topic: str, got: Collector, n: int, timeout: float = 30.0) -> None:
    """Publish receipt `n` until the consumer has it (its SUBSCRIBE may still be on the way), bounded."""
    deadline = time.monotonic() + timeout
    while not got.matching(lambda r: r.command_id == f"c{n}"):
        assert time.monotonic() < deadline, f"receipt c{n} never arrived"
        speaker.publish(topic, _receipt(n), qos=1)
        with contextlib.suppress(pytest.fail.Exception):
            got.wait(lambda r: r.command_id == f"c{n}", timeout=0.5)


@pytest.fixture(params=["embedded", "mosquitto"])
def accounts_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A broker with accounts (amqtt keeps no queue for anonymous sessions), user `worker`, password `pw`."""
    if request.param == "mosquitto":
        need(MQTT_URL, "Mosquitto: set BROADCAST_TEST_MQTT_URL")
        yield str(MQTT_URL)
        return
    write_mosquitto_files(tmp_path, [SpeakerAccess("spk-1", "spk-1", ("g1",), password="pw")], "worker", "pw")
    broker = EmbeddedBroker(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")
    broker.start()
    yield broker.url
    broker.close()


def test_receipts_sent_while_the_worker_restarts_are_delivered(accounts_broker: str) -> None:
    broker_url, topic_prefix = accounts_broker, "vb"
    worker_id = f"vb-worker-{uuid.uuid4().hex[:8]}"
    speaker = connect(broker_url, client_id="spk-1", username="spk-1", password="pw")
    worker = connect(broker_url, client_id=worker_id, username="worker", password="pw", clean_session=False)
    got = Collector()
    consumer = _consumer(worker, topic_prefix, got)
    topic = protocol.receipt_topic(topic_prefix, "spk-1")
    _publish_until(speaker, topic, got, 0)  # the positive path: the consumer hears receipts
    consumer.stop()  # a clean stop keeps the persistent session's subscriptions
    worker.close()
    for n in range(1, 21):
        speaker.publish(topic, _receipt(n), qos=1)  # while the worker is away
    worker = connect(broker_url, client_id=worker_id, username="worker", password="pw", clean_session=False)
    wait_for(lambda: worker.early_count > 0, "receipts before any subscribe")  # type: ignore[attr-defined]  (they came before any subscribe)
    got2 = Collector()
    consumer = _consumer(worker, topic_prefix, got2)
    got2.wait(lambda r: r.command_id.startswith("c") and r.command_id != "c0", count=20)
    consumer.stop(keep_session=False)  # the test's session is not needed any more
    worker.close()
    speaker.close()


def test_a_worker_whose_session_is_lost_subscribes_again(accounts_broker: str) -> None:
    prefix, worker_id = "vb", f"vb-worker-{uuid.uuid4().hex[:8]}"
    link = LinkProxy(accounts_broker)  # the worker's own network path, which the test can cut
    worker = connect(link.url, client_id=worker_id, username="worker", password="pw", clean_session=False)
    got = Collector()
    consumer = _consumer(worker, prefix, got)
    speaker = connect(accounts_broker, client_id="spk-1", username="spk-1", password="pw")
    topic = protocol.receipt_topic(prefix, "spk-1")
    try:
        _publish_until(speaker, topic, got, 0)  # the positive path
        link.down()
        wait_for(lambda: not worker.connected, "the worker to lose its link")
        # meanwhile the broker forgets the session (a clean-session login of the same account wipes it)
        wipe = connect(accounts_broker, client_id=worker_id, username="worker", password="pw", clean_session=True)
        wipe.close()
        link.up()
        wait_for(lambda: worker.connected, "the worker to reconnect", 40)
        assert worker.session_lost == 1  # type: ignore[attr-defined]
        _publish_until(speaker, topic, got, 1)  # heard again: the worker subscribed anew
    finally:
        consumer.stop(keep_session=False)
        speaker.close()
        worker.close()
        link.close()
