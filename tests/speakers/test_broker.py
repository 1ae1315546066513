"""The embedded broker's own behaviour (security is in test_broker_security)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.transport import connect
from speakers.transport.lean import LeanMqttClient

from .conftest import Collector


def test_free_port_restart_on_the_same_port_and_live_acl() -> None:
    broker = EmbeddedBroker(acl={"anonymous": {"read": ["a/#"], "write": ["a/#"]}})
    broker.start()
    port = broker.port
    assert port > 0
    assert broker.url == f"mqtt://127.0.0.1:{port}"
    assert broker.running
    broker.stop()
    assert not broker.running
    broker.start()
    assert broker.port == port
    client = connect(broker.url, client_id=f"c-{uuid.uuid4().hex[:6]}")
    seen = Collector()
    client.subscribe("a/#", seen.add)
    client.subscribe("b/#", seen.add)  # refused by the rules (as Mosquitto 2 refuses it)
    time.sleep(0.2)
    client.publish("a/1", b"x")
    client.publish("b/1", b"y")  # accepted on the wire but not delivered: no write right
    seen.wait(lambda m: m.topic == "a/1")
    broker.set_acl(None)  # lift all restrictions while running
    client.subscribe("b/#", seen.add)
    time.sleep(0.2)
    client.publish("b/2", b"z")
    seen.wait(lambda m: m.topic == "b/2")
    assert not [m for m in seen.items if m.topic == "b/1"]
    client.close()
    broker.close()


def test_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        broker = EmbeddedBroker(port=busy.getsockname()[1], start_timeout=5)
        with pytest.raises(SpeakerError) as exc:
            broker.start()
        assert exc.value.kind == "unavailable"


def test_new_clients_get_only_the_retained_messages_they_subscribed_to(embedded_broker: EmbeddedBroker) -> None:
    server = connect(embedded_broker.url, client_id="srv")
    server.subscribe("vb/state/+", Collector().add)  # someone else's subscription
    server.publish("vb/state/s1", b"retained state of s1", retain=True)
    got: list[tuple[str, bytes, bool]] = []

    async def speaker() -> None:
        client = LeanMqttClient(
            "127.0.0.1", embedded_broker.port, client_id="s2",
            subscriptions=[("vb/cmd/speaker/s2", 1)], on_message=lambda t, p, r: got.append((t, p, r)),
        )  # fmt: skip
        client.start()
        await asyncio.sleep(0.6)
        client.stop()
        await client.wait_stopped()

    asyncio.run(speaker())
    assert got == [], "amqtt 0.12 alone sends every retained message anyone subscribed to (past the ACL)"
    late = Collector()
    server.subscribe("vb/state/s1", late.add)
    assert late.wait(lambda m: m.retain)[0].payload == b"retained state of s1"
    server.close()
