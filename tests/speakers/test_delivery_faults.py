"""Faults found by the fault-injection suite (issue 7), each pinned on the speakers' side: two commands for one
broadcast play it once, and a stopped embedded broker drops even a client that reads nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from speakers.broker import EmbeddedBroker
from speakers.mediaserver import MediaServer
from speakers.protocol import Play, Target
from speakers.transport import connect
from speakers.transport.codec import connect_packet

from .conftest import AgentRunner, Clip, ServerSide


def test_two_commands_for_one_broadcast_play_it_once(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: MediaServer
) -> None:
    agent = make_agent()
    server.online(agent.id)
    clip = clips["tiny"]
    start = time.time() + 1.5

    def play(bid: str) -> Play:
        return Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                    duration_ms=clip.duration_ms, start_at=start)  # fmt: skip

    # The positive path: another broadcast queued at the same moment plays too.
    other = server.send(play("b-other"), [Target.speaker(agent.id)])
    # A command and the one that superseded it (new id, new sequence, same broadcast), both queued before
    # either starts, as when the outbox supersedes a command the speaker had already received.
    first = server.send(play("b-once"), [Target.speaker(agent.id)])
    second = server.send(play("b-once"), [Target.speaker(agent.id)])
    for command_id in (other, first, second):
        server.receipt(agent.id, "acknowledged", command_id=command_id)
    server.receipt(agent.id, "finished", command_id=other, timeout=20)
    refused = server.receipt(agent.id, "refused", broadcast_id="b-once", timeout=20)
    assert refused.reason == "already_played"
    finished = server.receipt(agent.id, "finished", broadcast_id="b-once", timeout=20)
    assert {refused.command_id, finished.command_id} == {first, second}
    started = [e for e in agent.timeline() if e["event"] == "started"]
    assert sorted(e["broadcast_id"] for e in started) == ["b-once", "b-other"], "each broadcast played once"


def _drain_until_closed(sock: socket.socket, timeout: float) -> bool:
    """Read everything the broker sent; True when the connection then ends (EOF or reset) within `timeout`."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


def test_a_stopped_embedded_broker_drops_a_client_that_reads_nothing() -> None:
    broker = EmbeddedBroker()
    broker.start()
    slow = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    slow.sendall(connect_packet("slow", keepalive=60, clean_session=True))
    assert slow.recv(4)[:1] == b"\x20", "CONNACK"
    # SUBSCRIBE t/# at QoS 0 (packet id 1), then read nothing more while the broker has plenty to send.
    filter_ = b"t/#"
    body = b"\x00\x01" + len(filter_).to_bytes(2, "big") + filter_ + b"\x00"
    slow.sendall(bytes([0x82, len(body)]) + body)
    assert slow.recv(5)[:1] == b"\x90", "SUBACK"
    publisher = connect(broker.url, client_id="flood")
    # The positive path: a well-behaved client is disconnected when the broker stops.
    quick = connect(broker.url, client_id="quick")
    payload = b"x" * 65536
    for _ in range(200):  # ~13 MB: far more than the kernel buffers between the broker and `slow`
        publisher.publish("t/x", payload, qos=0)
    publisher.publish("t/end", b"end", qos=1)
    broker.stop()
    deadline = time.monotonic() + 15
    while quick.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not quick.connected
    try:
        assert _drain_until_closed(slow, 15), "the broker stopped, yet the slow client's connection stays open"
    finally:
        slow.close()
        for client in (quick, publisher):
            client.close()
        broker.close()
