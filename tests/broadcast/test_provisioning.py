"""Broker operations (issue 13): what speakers are told, the generated Mosquitto files, the server's password.

Speakers never receive the server's credentials; `broadcast speakers broker-files` writes files a stock
Mosquitto (running as the `mosquitto` user) can read; `broadcast broker rotate-password` changes the server's
password without writing it to any log.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from broadcast.cli import main
from broadcast.models import AuditEvent, Speaker
from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.mosquitto import read_password_file, verify_password
from speakers.mosquitto_proc import MosquittoProcess, free_port, mosquitto_binary
from speakers.transport import connect
from tests.broadcast.test_provisioning_tls import broker_folder, make_pki
from tests.requires import need

SPEAKER = "spk-42122410420101-1"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run `broadcast ...` on a fresh instance (demo county seeded); `cli(*args, **env)` returns the Result."""
    from broadcast import demo
    from broadcast.platform import Platform
    from broadcast.setup import initialize

    instance = tmp_path / "instance"
    monkeypatch.setenv("BROADCAST_INSTANCE", str(instance))
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    monkeypatch.setenv("BROADCAST_LOG_LEVEL", "DEBUG")  # even debug logs must not carry a password
    for name in ("MQTT_URL", "MQTT_USERNAME", "MQTT_PASSWORD", "SPEAKER_MQTT_URL", "MOSQUITTO_DIR"):
        monkeypatch.delenv(f"BROADCAST_{name}", raising=False)
    platform = Platform.from_settings(instance)
    initialize(platform, "admin", "admin-password-123")
    with platform.db.transaction() as session:
        demo.seed(session)
    platform.close()

    def run(*args: str, **env: str) -> Result:
        for key, value in env.items():
            monkeypatch.setenv(f"BROADCAST_{key}", value)
        return CliRunner().invoke(main, list(args))

    run.instance = instance  # type: ignore[attr-defined]
    return run


def _platform(cli: Any) -> Any:
    from broadcast.platform import Platform

    return Platform.from_settings(cli.instance)


def _logs(cli: Any) -> str:
    folder = cli.instance / "logs"
    return "".join(p.read_text(errors="replace") for p in folder.glob("*")) if folder.exists() else ""


def test_speakers_never_get_the_servers_credentials(cli: Any) -> None:
    plain = cli("speakers", "provision", SPEAKER, MQTT_URL="mqtt://broker.example.cn:1884")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["broker_url"] == "mqtt://broker.example.cn:1884"  # the derived URL
    secret_url = "mqtt://vb-server:s3cret-Pa55@broker.example.cn:1884"
    derived = cli("speakers", "provision", SPEAKER, MQTT_URL=secret_url)
    assert derived.exit_code == 0, derived.output
    assert json.loads(derived.stdout)["broker_url"] == "mqtt://broker.example.cn:1884"
    told = cli("speakers", "provision", SPEAKER, SPEAKER_MQTT_URL="mqtts://admin:s3cret-Pa55@gb.example.cn:8883")
    assert told.exit_code == 0, told.output
    assert json.loads(told.stdout)["broker_url"] == "mqtts://gb.example.cn:8883"
    for result in (derived, told):
        assert "s3cret-Pa55" not in result.output
    platform = _platform(cli)
    assert platform.mqtt_url == "mqtt://broker.example.cn:1884", "the URL the server logs carries no password"
    assert platform.broker_account() == ("vb-server", "s3cret-Pa55"), "the server still logs in with it"
    platform.close()
    assert "s3cret-Pa55" not in _logs(cli)


def test_a_bad_speaker_url_is_refused_and_changes_nothing(cli: Any) -> None:
    assert cli("speakers", "provision", SPEAKER).exit_code == 0  # the positive path
    platform = _platform(cli)
    with platform.db.transaction() as session:
        before = session.get(Speaker, SPEAKER).broker_password_hash
    result = cli("speakers", "provision", SPEAKER, SPEAKER_MQTT_URL="http://gb.example.cn")
    assert result.exit_code == 2
    assert "消息服务器地址应为" in result.output
    with platform.db.transaction() as session:
        assert session.get(Speaker, SPEAKER).broker_password_hash == before
    platform.close()


def test_broker_files_are_readable_by_the_brokers_user(cli: Any, tmp_path: Path) -> None:
    base = broker_folder()
    pki = make_pki(base)
    folder = base / "village-broadcast"  # made by the command: 0750, group mosquitto
    env = {"MQTT_URL": "mqtt://127.0.0.1:1884", "MQTT_USERNAME": "vb-server", "MQTT_PASSWORD": "pw-1"}
    tls = {"MOSQUITTO_TLS_LISTENER": "8883", "MOSQUITTO_CERTFILE": str(pki.cert), "MOSQUITTO_KEYFILE": str(pki.key)}
    result = cli("speakers", "broker-files", str(folder), **env, **tls)
    assert result.exit_code == 0, result.output
    if os.geteuid() == 0:  # root may give the files to group mosquitto; others get a warning unless members
        assert "warning" not in result.output
    conf = (folder / "village-broadcast.conf").read_text()
    assert "user mosquitto" in conf
    assert "listener 1883\n" in conf, "speakers: every address, not Mosquitto 2's localhost default"
    assert "listener 1884 127.0.0.1\n" in conf
    assert "listener 8883\n" in conf
    assert f"certfile {pki.cert}" in conf
    assert folder.stat().st_mode & 0o777 == 0o750
    for name in ("passwd.server", "passwd.speakers", "acl.server", "acl.speakers", "village-broadcast.conf"):
        stat = (folder / name).stat()
        assert stat.st_mode & 0o777 == 0o640
        if os.geteuid() == 0:
            import grp

            assert grp.getgrgid(stat.st_gid).gr_name == "mosquitto", name
    # a TLS listener without its key is refused before any file changes
    before = (folder / "village-broadcast.conf").read_text()
    bad = cli("speakers", "broker-files", str(folder), MOSQUITTO_KEYFILE=str(tmp_path / "missing.key"))
    assert bad.exit_code == 2
    assert "TLS 文件不存在" in bad.output
    assert (folder / "village-broadcast.conf").read_text() == before
    bad = cli("speakers", "broker-files", str(folder), MOSQUITTO_SPEAKER_LISTENER="port-one")
    assert bad.exit_code == 2
    assert "监听地址" in bad.output
    assert (folder / "village-broadcast.conf").read_text() == before


def test_rotate_on_the_embedded_broker(cli: Any) -> None:
    platform = _platform(cli)
    old = platform.broker_account()[1]
    assert cli("speakers", "provision", SPEAKER).exit_code == 0  # writes instance/broker/ with the old password
    broker = EmbeddedBroker(password_file=platform.broker_dir / "passwd", acl_file=platform.broker_dir / "acl")
    broker.start()
    try:
        connect(broker.url, client_id="srv-1", username="vb-server", password=old).close()  # the positive path
        result = cli("broker", "rotate-password")
        assert result.exit_code == 0, result.output
        new = platform.broker_account()[1]
        assert new != old
        assert new not in result.output, "the instance keeps it: nothing to paste, so it is not shown"
        assert "restart" in result.output
        connect(broker.url, client_id="srv-2", username="vb-server", password=new).close()
        with pytest.raises(SpeakerError):
            connect(broker.url, client_id="srv-3", username="vb-server", password=old, timeout=3)
    finally:
        broker.close()
    assert new not in _logs(cli)
    with platform.db.transaction() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "broker.rotate_password")).all()
        assert [e.object_id for e in events] == ["vb-server"]
        assert new not in json.dumps(events[0].detail or {})
    platform.close()


def test_rotate_for_mosquitto_prints_the_steps_and_the_password_once(cli: Any) -> None:
    need(mosquitto_binary(), "mosquitto is not installed")
    folder = broker_folder()
    server_port = free_port()
    env = {
        "MQTT_URL": f"mqtt://127.0.0.1:{server_port}",
        "MQTT_USERNAME": "vb-server",
        "MQTT_PASSWORD": "old-password-1",
        "MOSQUITTO_SERVER_LISTENER": f"127.0.0.1:{server_port}",
        "MOSQUITTO_SPEAKER_LISTENER": f"127.0.0.1:{free_port()}",
    }
    assert cli("speakers", "broker-files", str(folder), **env).exit_code == 0
    broker = MosquittoProcess(folder, port=server_port, conf_file=folder / "village-broadcast.conf")
    broker.start()
    try:
        connect(broker.url, client_id="w-1", username="vb-server", password="old-password-1").close()
        result = cli("broker", "rotate-password", "--mosquitto-dir", str(folder))
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        new = lines[lines.index(next(x for x in lines if "shown once" in x)) + 1].strip()
        assert len(new) >= 24
        assert result.stdout.count(new) == 1
        for step in ("BROADCAST_MQTT_PASSWORD", "reload Mosquitto", "restart the web tier and the worker"):
            assert step in result.stdout
        users = read_password_file(folder / "passwd.server")
        assert verify_password(new, users["vb-server"])
        assert not verify_password("old-password-1", users["vb-server"])
        assert new not in _logs(cli)
        os.kill(broker.pid, signal.SIGHUP)  # the documented reload
        worker = None
        for _attempt in range(100):  # bounded: until the reload has taken the new password
            try:
                worker = connect(broker.url, client_id="w-2", username="vb-server", password=new, timeout=0.5)
                break
            except SpeakerError:
                continue
        assert worker is not None, "the new password logs in after the reload"
        worker.close()
        with pytest.raises(SpeakerError):
            connect(broker.url, client_id="w-3", username="vb-server", password="old-password-1", timeout=3)
    finally:
        broker.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def test_rotate_without_an_account_is_refused(cli: Any) -> None:
    result = cli("broker", "rotate-password", MQTT_URL="mqtt://127.0.0.1:1884")
    assert result.exit_code == 2
    assert "BROADCAST_MQTT_USERNAME" in result.output
