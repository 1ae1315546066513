"""Provisioning for mqtts (issue 13): the CA travels in the speaker's config and the agent verifies the broker.

A real Mosquitto runs the generated configuration with a TLS listener whose certificate is signed by a CA made
here with `cryptography`; an agent configured with that CA connects, one configured with another CA does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import grp
import ipaddress
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broadcast.cli import main
from speakers.config import AgentConfig
from speakers.mosquitto import Listeners, write_mosquitto_files
from speakers.mosquitto_proc import MosquittoProcess, free_port, mosquitto_binary
from speakers.transport import BrokerAddress
from speakers.transport.lean import LeanMqttClient
from tests.requires import need

SPEAKER = "spk-42122410420101-1"


@dataclass
class Pki:
    """A CA and a server certificate for 127.0.0.1/localhost, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path, label: str = "village-broadcast test CA") -> Pki:
    """Write ca.pem, server.pem and server.key (0640, group mosquitto when possible) into `folder`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(label))
        .issuer_name(_name(label))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    for path in (pki.ca, pki.cert, pki.key):
        share_with_broker(path, 0o640)
    return pki


def share_with_broker(path: Path, mode: int) -> None:
    """Give a file or folder to group `mosquitto` (when we may), as /etc/mosquitto keeps its files."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            os.chown(path, 0, grp.getgrnam("mosquitto").gr_gid)


def broker_folder() -> Path:
    """A folder the broker's user can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="vb-tls-"))
    share_with_broker(folder, 0o750)
    return folder


def try_connect(config: AgentConfig, timeout: float = 10.0) -> tuple[bool, str | None]:
    """Connect the way the agent does (its TLS context, its account); (connected, last error)."""
    address = BrokerAddress.parse(config.broker_url)

    async def attempt() -> tuple[bool, str | None]:
        connected = asyncio.Event()
        client = LeanMqttClient(
            address.host, address.port, client_id=config.speaker_id, on_message=lambda *_: None,
            username=config.username, password=config.password, ssl_context=config.tls_context(),
            on_connect=lambda _present: connected.set(), reconnect_min_s=0.1, reconnect_max_s=0.2,
        )  # fmt: skip
        client.start()
        deadline = asyncio.get_running_loop().time() + timeout
        # bounded: until the broker accepts us, or the TLS handshake has failed (last_error says why)
        while not connected.is_set() and asyncio.get_running_loop().time() < deadline:
            if client.last_error and "CERTIFICATE_VERIFY_FAILED" in client.last_error:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connected.wait(), 0.05)
        error = client.last_error
        client.stop()
        return connected.is_set(), error

    return asyncio.run(attempt())


@pytest.fixture
def tls_broker() -> Iterator[tuple[Pki, Listeners, Path]]:
    """Mosquitto with the generated configuration and a TLS speaker listener; yields (pki, listeners, folder)."""
    need(mosquitto_binary(), "mosquitto is not installed")
    folder = broker_folder()
    try:
        pki = make_pki(folder)
        listeners = Listeners(
            speaker_port=free_port(), server_port=free_port(), tls_port=free_port(),
            certfile=str(pki.cert), keyfile=str(pki.key),
        )  # fmt: skip
        yield pki, listeners, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _provision(app: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """`broadcast speakers provision` against the app's instance (CliRunner: the real command)."""
    platform = app.extensions["platform"]
    monkeypatch.setenv("BROADCAST_INSTANCE", str(platform.instance))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", platform.settings["DATABASE_URL"])
    monkeypatch.setenv("BROADCAST_TOPIC_PREFIX", platform.settings["TOPIC_PREFIX"])
    monkeypatch.setenv("BROADCAST_MQTT_URL", platform.settings["MQTT_URL"])
    return CliRunner().invoke(main, ["speakers", "provision", SPEAKER, *args])


def test_a_speaker_verifies_the_broker_with_the_provisioned_ca(
    app: Any, monkeypatch: pytest.MonkeyPatch, tls_broker: tuple[Pki, Listeners, Path], tmp_path: Path
) -> None:
    from tests.broadcast.conftest import seed_county

    seed_county(app)
    pki, listeners, folder = tls_broker
    monkeypatch.setenv("BROADCAST_SPEAKER_MQTT_URL", f"mqtts://localhost:{listeners.tls_port}")
    result = _provision(app, monkeypatch, "--ca-file", str(pki.ca))
    assert result.exit_code == 0, result.output
    config = AgentConfig.from_json(result.stdout)
    assert config.broker_url == f"mqtts://localhost:{listeners.tls_port}"
    assert config.ca_cert == pki.ca.read_text()
    platform = app.extensions["platform"]
    with platform.db.transaction() as session:
        from broadcast.services import provisioning

        accesses = provisioning.broker_accesses(session)
    write_mosquitto_files(folder, accesses, "vb-server", "server-pw", listeners=listeners)
    broker = MosquittoProcess.generated(folder, listeners)
    broker.start()
    try:
        connected, error = try_connect(config)
        assert connected, f"the right CA connects ({error})"
        other = make_pki(tmp_path, "another CA")  # a CA that did not sign the broker's certificate
        wrong = AgentConfig.from_dict({**json.loads(config.to_json()), "ca_cert": other.ca.read_text()})
        connected, error = try_connect(wrong)
        assert not connected
        assert error
        assert "CERTIFICATE_VERIFY_FAILED" in error
    finally:
        broker.stop()


def test_a_bad_ca_file_is_refused_and_changes_nothing(
    app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from broadcast.models import Speaker
    from tests.broadcast.conftest import seed_county

    seed_county(app)
    platform = app.extensions["platform"]
    good = make_pki(tmp_path)
    assert _provision(app, monkeypatch, "--ca-file", str(good.ca)).exit_code == 0  # the positive path
    with platform.db.transaction() as session:
        before = session.get(Speaker, SPEAKER).broker_password_hash
    not_pem = tmp_path / "not-a-cert.pem"
    not_pem.write_text("hello")
    for bad in (not_pem, good.key, tmp_path / "missing.pem"):
        result = _provision(app, monkeypatch, "--ca-file", str(bad))
        assert result.exit_code == 2, result.output
        assert "CA 证书文件无法使用" in result.output
        assert "not usable" in result.output
    with platform.db.transaction() as session:
        assert session.get(Speaker, SPEAKER).broker_password_hash == before, "the password was not changed"
