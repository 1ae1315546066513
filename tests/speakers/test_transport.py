"""Transports on real brokers: the server's paho driver and the agent's lean asyncio client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.mosquitto_proc import free_port
from speakers.transport import BrokerAddress, Message, codec, connect
from speakers.transport.lean import LeanMqttClient

from .conftest import Collector


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.02)


def lean(url: str, client_id: str, got: list, subs: list[tuple[str, int]], **kw: object) -> LeanMqttClient:
    address = BrokerAddress.parse(url)
    return LeanMqttClient(
        address.host, address.port, client_id=client_id, subscriptions=subs,
        on_message=lambda t, p, r: got.append((t, p, r)), reconnect_min_s=0.1, reconnect_max_s=0.5, **kw,
    )  # fmt: skip


def test_two_loops_in_two_threads_each_parse_only_what_their_own_socket_read() -> None:
    """The read buffer asyncio fills is per thread: a speaker's agent beside another one's must not parse its bytes.

    This is the interleaving a busy machine produced (a test's two agents, each in its own thread and loop):
    thread A is handed its buffer and the socket's bytes land in it, then thread B reads and parses, then A
    parses. With one buffer per process A parsed B's bytes, called the packet broken and dropped its connection.
    """
    got_a: list = []
    got_b: list = []
    a = lean("mqtt://127.0.0.1:1", "a", got_a, [])
    b = lean("mqtt://127.0.0.1:1", "b", got_b, [])
    packet_a = codec.publish_packet("p/cmd/a", b"for-a", qos=0, retain=False, packet_id=0, dup=False)
    packet_b = codec.publish_packet("p/cmd/b", b"for-b", qos=0, retain=False, packet_id=0, dup=False)
    a_filled, b_done = threading.Event(), threading.Event()

    def read_a() -> None:
        buffer = a.get_buffer(-1)
        buffer[: len(packet_a)] = packet_a  # what recv_into does
        a_filled.set()
        assert b_done.wait(5)
        a.buffer_updated(len(packet_a))

    def read_b() -> None:
        assert a_filled.wait(5)
        buffer = b.get_buffer(-1)
        buffer[: len(packet_b)] = packet_b
        b.buffer_updated(len(packet_b))
        b_done.set()

    threads = [threading.Thread(target=read_a), threading.Thread(target=read_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert got_b == [("p/cmd/b", b"for-b", False)]
    assert got_a == [("p/cmd/a", b"for-a", False)]


def test_broker_urls() -> None:
    assert BrokerAddress.parse("mqtt://h:1884") == BrokerAddress("mqtt", "h", 1884, False)
    assert BrokerAddress.parse("mqtts://h").port == 8883
    assert BrokerAddress.parse("mqtt://u:p%40ss@h:1").password == "p@ss"
    for bad in ("http://h:1", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(SpeakerError):
            BrokerAddress.parse(bad)


def test_unreachable_broker_is_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(SpeakerError) as exc:
        connect(f"mqtt://127.0.0.1:{free_port()}", client_id="nobody", timeout=1.0)
    assert exc.value.kind == "unavailable"
    assert time.monotonic() - started < 5


def test_paho_and_lean_clients_exchange_qos1_retained_and_will(broker_url: str, topic_prefix: str) -> None:
    server = connect(broker_url, client_id=f"srv-{topic_prefix}")
    received = Collector()
    server.subscribe(f"{topic_prefix}/up/#", received.add)

    async def scenario() -> None:
        got: list = []
        acks: list = []
        client = lean(broker_url, f"lean-{topic_prefix}", got, [(f"{topic_prefix}/down", 1)],
                      will=(f"{topic_prefix}/up/will", b"gone", 1, True), keepalive=5)  # fmt: skip
        client.start()
        await until(lambda: client.connected)
        await asyncio.sleep(0.2)  # the SUBACK
        await asyncio.to_thread(server.publish, f"{topic_prefix}/down", b"\x00binary\xff", qos=1)
        await until(lambda: bool(got))
        assert got == [(f"{topic_prefix}/down", b"\x00binary\xff", False)]
        assert client.publish(f"{topic_prefix}/up/r", b"receipt", qos=1, on_ack=lambda: acks.append(1))
        await until(lambda: acks == [1])
        client.publish(f"{topic_prefix}/up/state", b"retained", qos=1, retain=True)
        await asyncio.sleep(0.2)
        client.abort()  # an abrupt loss: the broker publishes the will
        await asyncio.sleep(0.3)
        client.stop()
        await client.wait_stopped()

    asyncio.run(scenario())
    received.wait(lambda m: m.topic.endswith("/up/will") and m.payload == b"gone")
    received.wait(lambda m: m.topic.endswith("/up/r") and m.payload == b"receipt")
    late = Collector()
    server.subscribe(f"{topic_prefix}/up/state", late.add)
    retained = late.wait(lambda m: m.payload == b"retained")[0]
    assert isinstance(retained, Message)
    assert retained.retain
    server.publish(f"{topic_prefix}/up/state", b"", qos=1, retain=True)  # clean up the shared broker
    server.close()


def test_both_clients_reconnect_after_a_broker_restart() -> None:
    broker = EmbeddedBroker()
    broker.start()
    server = connect(broker.url, client_id="srv")
    received = Collector()
    server.subscribe("p/up", received.add)

    async def scenario() -> None:
        got: list = []
        client = lean(broker.url, "lean", got, [("p/down", 1)])
        client.start()
        await until(lambda: client.connected)
        await asyncio.to_thread(broker.stop)
        await until(lambda: not client.connected)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.start)
        await until(lambda: client.connected, timeout=10)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.publish, "p/down", b"again", qos=1)
        await until(lambda: bool(got), timeout=10)
        client.publish("p/up", b"back", qos=1)
        await asyncio.sleep(0.2)
        client.stop()
        await client.wait_stopped()

    try:
        asyncio.run(scenario())
        received.wait(lambda m: m.payload == b"back", timeout=10)
    finally:
        server.close()
        broker.close()
