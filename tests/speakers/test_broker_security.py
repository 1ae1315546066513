"""Generated broker credentials and ACLs, enforced by a real Mosquitto and by the embedded broker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from speakers import protocol
from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.mosquitto import (
    SpeakerAccess,
    parse_mosquitto_acl,
    password_file_line,
    password_hash,
    read_password_file,
    verify_password,
    write_mosquitto_files,
)  # fmt: skip
from speakers.mosquitto_proc import MosquittoProcess, mosquitto_binary
from speakers.transport import BrokerAddress, connect
from speakers.transport.lean import LeanMqttClient
from tests.requires import need

from .conftest import Collector

P = "vb"
SERVER, SERVER_PW = "broadcast-server", "server-secret-1"
A = SpeakerAccess("spk-a", "spk-a", ("g1", "v1", "t1"), password="pw-a")
B = SpeakerAccess("spk-b", "spk-b", ("g2", "v2", "t1"), password_hash=password_hash("pw-b"))


def test_password_lines_are_mosquitto_7_format() -> None:
    line = password_file_line("spk-a", "secret")
    user, hashed = line.split(":", 1)
    assert user == "spk-a"
    parts = hashed.split("$")
    assert parts[1] == "7"
    assert parts[2] == "101"
    assert verify_password("secret", hashed)
    assert not verify_password("Secret", hashed)
    assert password_hash("x") != password_hash("x"), "salted"
    with pytest.raises(SpeakerError):
        password_file_line("bad:name", "x")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_hashes_made_by_mosquitto_passwd_verify(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "alice", "s3cret"], check=True)
    users = read_password_file(path)
    assert verify_password("s3cret", users["alice"])
    assert not verify_password("other", users["alice"])


def test_generated_files(tmp_path: Path) -> None:
    rules = write_mosquitto_files(tmp_path, [A, B], SERVER, SERVER_PW, prefix=P)
    for name in ("passwd", "acl", "passwd.server", "passwd.speakers", "acl.server", "acl.speakers"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, "readable by group mosquitto only"
    assert set(read_password_file(tmp_path / "passwd.server")) == {SERVER}
    assert set(read_password_file(tmp_path / "passwd.speakers")) == {"spk-a", "spk-b"}
    users = read_password_file(tmp_path / "passwd")
    assert set(users) == {SERVER, "spk-a", "spk-b"}
    assert verify_password("pw-a", users["spk-a"])
    assert verify_password("pw-b", users["spk-b"])
    parsed = parse_mosquitto_acl((tmp_path / "acl").read_text())
    for user, entry in rules.items():
        assert {k: sorted(v) for k, v in parsed[user].items()} == {k: sorted(v) for k, v in entry.items()}
    assert sorted(rules["spk-a"]["read"]) == sorted(
        ["vb/cmd/speaker/spk-a", "vb/cmd/region/g1", "vb/cmd/region/v1", "vb/cmd/region/t1", "vb/time/spk-a/resp"]
    )
    assert sorted(rules["spk-a"]["write"]) == ["vb/receipt/spk-a", "vb/state/spk-a", "vb/time/spk-a/req"]
    assert "vb/cmd/#" in rules[SERVER]["write"]
    assert "vb/receipt/+" in rules[SERVER]["read"]
    conf = (tmp_path / "village-broadcast.conf").read_text()
    assert f"password_file {tmp_path.resolve() / 'passwd.server'}" in conf
    assert f"password_file {tmp_path.resolve() / 'passwd.speakers'}" in conf
    assert conf.count("allow_anonymous false") == 2
    assert conf.index("per_listener_settings true") < conf.index("\nlistener ")
    assert "use_username_as_clientid true" in conf.split("# speakers")[1], "on the speakers' listener"


@pytest.fixture(params=["embedded", "mosquitto"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A broker enforcing generated files, plus an 'observer' account that reads everything."""
    write_mosquitto_files(tmp_path, [A, B], SERVER, SERVER_PW, prefix=P)
    with open(tmp_path / "passwd", "a") as fh:
        fh.write(password_file_line("observer", "obs") + "\n")
    with open(tmp_path / "acl", "a") as fh:
        fh.write("user observer\ntopic read #\n")
    if request.param == "embedded":
        broker = EmbeddedBroker(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")
        broker.start()
        yield broker.url
        broker.close()
        return
    need(mosquitto_binary(), "mosquitto not installed (Debian package mosquitto)")
    process = MosquittoProcess(tmp_path, password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")
    process.start()
    yield process.url
    process.stop()


async def _speaker_attempts(url: str, got: list) -> LeanMqttClient:
    address = BrokerAddress.parse(url)
    wanted = [
        protocol.command_topic_for_region(P, "g1"),  # its own region: allowed
        protocol.command_topic_for_speaker(P, "spk-b"),  # another speaker's: refused
        f"{P}/cmd/#",  # everything: refused
        f"{P}/receipt/+",  # other speakers' receipts: refused
    ]
    client = LeanMqttClient(
        address.host,
        address.port,
        client_id="spk-a",
        username="spk-a",
        password="pw-a",
        subscriptions=[(topic, 1) for topic in wanted],
        on_message=lambda t, p, r: got.append(t),
    )
    client.start()
    for _ in range(100):
        if client.connected:
            break
        await asyncio.sleep(0.05)
    assert client.connected
    await asyncio.sleep(0.3)
    return client


def test_acl_limits_each_account_to_its_topics(secured: str) -> None:
    with pytest.raises(SpeakerError):
        connect(secured, client_id="intruder", username="spk-a", password="wrong", timeout=2)
    with pytest.raises(SpeakerError):
        connect(secured, client_id="anon", timeout=2)
    server = connect(secured, client_id="srv", username=SERVER, password=SERVER_PW)
    observer = connect(secured, client_id="observer", username="observer", password="obs")
    seen = Collector()
    observer.subscribe(f"{P}/#", seen.add)
    receipts = Collector()
    server.subscribe(protocol.receipt_topic(P), receipts.add)
    time.sleep(0.3)

    async def scenario() -> list:
        got: list = []
        client = await _speaker_attempts(secured, got)
        await asyncio.to_thread(server.publish, protocol.command_topic_for_region(P, "g1"), b"for-a", qos=1)
        await asyncio.to_thread(server.publish, protocol.command_topic_for_speaker(P, "spk-b"), b"for-b", qos=1)
        await asyncio.to_thread(server.publish, protocol.command_topic_for_region(P, "g2"), b"for-g2", qos=1)
        client.publish(protocol.receipt_topic(P, "spk-a"), b"own-receipt", qos=1)
        client.publish(protocol.receipt_topic(P, "spk-b"), b"spoofed-receipt", qos=1)
        client.publish(protocol.command_topic_for_region(P, "g1"), b"forged-command", qos=1)
        client.publish(protocol.state_topic(P, "spk-b"), b"spoofed-state", qos=1)
        await asyncio.sleep(0.6)
        client.stop()
        await client.wait_stopped()
        return got

    got = asyncio.run(scenario())
    assert got == [protocol.command_topic_for_region(P, "g1")], "a speaker reads only its own and its regions' topics"
    receipts.wait(lambda m: m.payload == b"own-receipt")
    time.sleep(0.3)
    payloads = {m.payload for m in seen.items}
    assert b"own-receipt" in payloads
    assert b"for-b" in payloads
    assert not payloads & {b"spoofed-receipt", b"forged-command", b"spoofed-state"}, "speakers cannot write there"
    server.close()
    observer.close()
