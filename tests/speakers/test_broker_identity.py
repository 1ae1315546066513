"""Fault injection on real brokers: a broker account is an identity (issue 7).

With one speaker's password an attacker tries to take over another speaker's client id, the worker's
client id, and to leave last wills on foreign topics. On the embedded broker every such CONNECT is refused
before it can touch the victim's session; on Mosquitto (the generated two-listener configuration) the
speaker listener forces the client id to the user name and the server listener knows no speaker account.
Every test first shows the victim receiving (the positive path), then attacks, then shows it still does.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from speakers import protocol
from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.mosquitto import Listeners, SpeakerAccess, write_mosquitto_files
from speakers.mosquitto_proc import MosquittoProcess, free_port, mosquitto_binary
from speakers.transport import BrokerAddress, Transport, connect
from speakers.transport.codec import connect_packet
from tests.requires import need

from .conftest import Collector

P = "vb"
SERVER, SERVER_PW = "broadcast-server", "server-secret-1"
A = SpeakerAccess("spk-a", "spk-a", ("g1", "v1"), password="pw-a")
B = SpeakerAccess("spk-b", "spk-b", ("g2", "v1"), password="pw-b")
WORKER_ID = f"vb-worker-{P}"


@dataclass
class Brokers:
    """Where speakers connect (`speaker_url`) and where the server connects (`server_url`)."""

    kind: str
    speaker_url: str
    server_url: str


def _readable_dir() -> Path:
    """A folder a Mosquitto that dropped to the `mosquitto` user can read (pytest's tmp is 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix="vb-broker-"))
    os.chmod(folder, 0o750)  # noqa: S103  (group mosquitto only, like /etc/mosquitto)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            os.chown(folder, 0, grp.getgrnam("mosquitto").gr_gid)
    return folder


@pytest.fixture(params=["embedded", "mosquitto"])
def brokers(request: pytest.FixtureRequest) -> Iterator[Brokers]:
    """A broker enforcing the generated files: the embedded one, and Mosquitto running them as is."""
    folder = _readable_dir()
    listeners = Listeners(speaker_port=free_port(), server_port=free_port())
    write_mosquitto_files(folder, [A, B], SERVER, SERVER_PW, prefix=P, listeners=listeners)
    try:
        if request.param == "embedded":
            broker = EmbeddedBroker(password_file=folder / "passwd", acl_file=folder / "acl")
            broker.start()
            yield Brokers("embedded", broker.url, broker.url)
            broker.close()
            return
        need(mosquitto_binary(), "mosquitto is not installed")
        process = MosquittoProcess.generated(folder, listeners)
        process.start()
        yield Brokers("mosquitto", process.url, process.server_url)
        process.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def raw_connect(
    url: str, client_id: str, username: str, password: str, *, will: tuple[str, bytes] | None = None
) -> tuple[socket.socket, int]:
    """Send one CONNECT (clean session) and return the socket and the CONNACK return code."""
    address = BrokerAddress.parse(url)
    sock = socket.create_connection((address.host, address.port), timeout=5)
    packet = connect_packet(
        client_id, keepalive=30, clean_session=True, username=username, password=password,
        will=(will[0], will[1], 1, True) if will else None,
    )  # fmt: skip
    sock.sendall(packet)
    try:
        reply = sock.recv(4)
    except OSError:
        reply = b""
    code = reply[3] if len(reply) == 4 else -1  # -1: the broker closed the connection without a CONNACK
    return sock, code


def _victim(url: str, access: SpeakerAccess, topic: str) -> tuple[Transport, Collector]:
    transport = connect(url, client_id=access.username, username=access.username, password=access.password)
    got = Collector()
    transport.subscribe(topic, got.add)
    return transport, got


def _probe(server: Transport, topic: str, got: Collector, payload: bytes) -> None:
    """Publish until the subscriber has it (its SUBSCRIBE may still be on the way), bounded."""
    for _attempt in range(50):
        server.publish(topic, payload, qos=1)
        if got.matching(lambda m: m.payload == payload):
            return
        try:
            got.wait(lambda m: m.payload == payload, timeout=0.2)
            return
        except pytest.fail.Exception:
            continue
    pytest.fail(f"{payload!r} never arrived")


def test_speaker_id_takeover_cannot_silence_the_victim(brokers: Brokers) -> None:
    server = connect(brokers.server_url, client_id="srv", username=SERVER, password=SERVER_PW)
    topic = protocol.command_topic_for_speaker(P, "spk-b")
    victim, got = _victim(brokers.speaker_url, B, topic)
    _probe(server, topic, got, b"before")  # the positive path: the victim hears its commands
    for attempt in range(3):  # wrong password, then spk-a's own password, both with spk-b's client id
        user, password = ("spk-b", "guess") if attempt == 0 else ("spk-a", "pw-a")
        sock, code = raw_connect(brokers.speaker_url, "spk-b", user, password)
        if brokers.kind == "embedded" or attempt == 0:
            assert code != 0, "the CONNECT is refused"
        sock.close()  # no DISCONNECT: like a box pulled off the network after two seconds
    server.publish(topic, b"after", qos=1)
    got.wait(lambda m: m.payload == b"after")
    assert victim.connected, "the victim was never kicked off"
    victim.close()
    server.close()


def test_worker_id_cannot_be_taken_by_a_speaker_account(brokers: Brokers) -> None:
    worker = connect(brokers.server_url, client_id=WORKER_ID, username=SERVER, password=SERVER_PW, clean_session=False)
    receipts = Collector()
    worker.subscribe(protocol.receipt_topic(P), receipts.add)
    speaker = connect(brokers.speaker_url, client_id="spk-a", username="spk-a", password="pw-a")
    _probe(speaker, protocol.receipt_topic(P, "spk-a"), receipts, b"receipt-1")
    sock, code = raw_connect(brokers.speaker_url, WORKER_ID, "spk-a", "pw-a")
    if brokers.kind == "embedded":
        assert code != 0, "a speaker account may not use the worker's client id"
    sock.close()
    speaker.close()
    speaker = connect(brokers.speaker_url, client_id="spk-a", username="spk-a", password="pw-a")
    speaker.publish(protocol.receipt_topic(P, "spk-a"), b"receipt-2", qos=1)
    receipts.wait(lambda m: m.payload == b"receipt-2")
    assert worker.connected
    assert worker.session_lost == 0  # type: ignore[attr-defined]
    speaker.close()
    worker.close()


@pytest.mark.parametrize("brokers", ["mosquitto"], indirect=True)  # the embedded broker has one listener
def test_speaker_account_cannot_use_the_server_listener(brokers: Brokers) -> None:
    server = connect(brokers.server_url, client_id="srv", username=SERVER, password=SERVER_PW)
    assert server.connected, "the positive path: the server's account logs in there"
    with pytest.raises(SpeakerError):
        connect(brokers.server_url, client_id="anything", username="spk-a", password="pw-a", timeout=3)
    with pytest.raises(SpeakerError):
        connect(brokers.speaker_url, client_id=SERVER, username=SERVER, password=SERVER_PW, timeout=3)
    server.close()


def test_wills_and_retained_messages_obey_the_acl(brokers: Brokers) -> None:
    server = connect(brokers.server_url, client_id="srv", username=SERVER, password=SERVER_PW)
    states = Collector()
    server.subscribe(protocol.state_topic(P), states.add)
    receipts = Collector()
    server.subscribe(protocol.receipt_topic(P), receipts.add)
    victim, commands = _victim(brokers.speaker_url, B, protocol.command_topic_for_speaker(P, "spk-b"))
    victim.subscribe(protocol.command_topic_for_region(P, "v1"), commands.add)
    _probe(server, protocol.command_topic_for_region(P, "v1"), commands, b"probe")
    # the positive path: a will on its own state topic is published when the connection drops
    sock, code = raw_connect(brokers.speaker_url, "spk-a", "spk-a", "pw-a", will=(f"{P}/state/spk-a", b"own-will"))
    assert code == 0
    sock.close()
    states.wait(lambda m: m.payload == b"own-will")
    foreign = [f"{P}/state/spk-b", f"{P}/receipt/spk-b", f"{P}/cmd/speaker/spk-b", f"{P}/cmd/region/v1"]
    for topic in foreign:
        sock, code = raw_connect(brokers.speaker_url, "spk-a", "spk-a", "pw-a", will=(topic, b"forged-will"))
        if brokers.kind == "embedded":
            assert code != 0, f"a will on {topic} is refused at CONNECT"
        sock.close()
    # a retained publish on a foreign state topic is dropped too, then a marker shows the stream moved on
    speaker = connect(brokers.speaker_url, client_id="spk-a", username="spk-a", password="pw-a")
    speaker.publish(f"{P}/state/spk-b", b"forged-retained", qos=1, retain=True)
    speaker.publish(f"{P}/state/spk-a", b"marker", qos=1, retain=True)
    states.wait(lambda m: m.payload == b"marker")
    late = connect(brokers.server_url, client_id="srv-late", username=SERVER, password=SERVER_PW)
    retained = Collector()
    late.subscribe(protocol.state_topic(P), retained.add)
    retained.wait(lambda m: m.payload == b"marker")
    server.publish(protocol.command_topic_for_region(P, "v1"), b"last", qos=1)
    commands.wait(lambda m: m.payload == b"last")
    payloads = {m.payload for m in [*states.items, *receipts.items, *commands.items, *retained.items]}
    assert not payloads & {b"forged-will", b"forged-retained"}, "nothing forged was delivered or retained"
    for client in (speaker, late, victim, server):
        client.close()


def test_generated_config_is_includable_from_a_stock_config(tmp_path: Path) -> None:
    need(mosquitto_binary(), "mosquitto is not installed")
    folder = _readable_dir()
    try:
        listeners = Listeners(speaker_port=free_port(), server_port=free_port())
        write_mosquitto_files(folder, [A], SERVER, SERVER_PW, prefix=P, listeners=listeners)
        for name in ("passwd.server", "passwd.speakers", "acl.speakers", "village-broadcast.conf"):
            assert (folder / name).stat().st_mode & 0o777 == 0o640
        stock = tmp_path / "mosquitto.conf"
        stock.write_text(f"persistence false\nlog_dest stderr\ninclude_dir {folder}\n")
        log = tmp_path / "mosquitto.log"
        with open(log, "wb") as errors:
            process = subprocess.Popen([str(mosquitto_binary()), "-c", str(stock)], stderr=errors)
        try:
            address = f"mqtt://127.0.0.1:{listeners.speaker_port}"
            transport = None
            for _attempt in range(100):  # bounded: until the listener accepts
                try:
                    transport = connect(address, client_id="spk-a", username="spk-a", password="pw-a", timeout=0.2)
                    break
                except SpeakerError:
                    assert process.poll() is None, log.read_text()
            assert transport is not None
            assert transport.connected
            transport.close()
        finally:
            process.terminate()
            process.wait(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
