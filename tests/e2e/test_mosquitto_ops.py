"""Mosquitto as a county runs it (issue 13): generated files, a non-root broker, TLS, and reloads without an outage.

The real `mosquitto -c DIR/village-broadcast.conf` runs as the `mosquitto` user (the generated configuration
names it; started as root, Mosquitto drops to it after binding), with a plain and a TLS listener for speakers
and a loopback listener for the server. Two real agents (one over mqtts, verifying the broker with the CA from
its provisioned config) and a real `broadcast run` (web and worker on the external broker) connect. A third
speaker is provisioned, the files regenerated, Mosquitto reloaded (SIGHUP): the new speaker logs in, a notice
reaches all three, and no connection that existed before the reload was ever closed: each process's TCP
connections to the broker are the same sockets afterwards, and no last will was published.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from speakers.mosquitto_proc import mosquitto_binary
from speakers.transport import connect
from tests.broadcast.test_provisioning_tls import broker_folder, make_pki
from tests.conftest import free_port
from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import Proc, exe, http, wait_for
from tests.requires import need

pytestmark = pytest.mark.e2e
TOWNSHIP = "421224104000"
PLAIN, TLS, LATE = "spk-42122410420101-1", "spk-42122410420101-2", "spk-42122410420201-1"


def tcp_links(pid: int, port: int) -> set[int]:
    """Local ports of the established TCP connections process `pid` holds to `port` (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    links = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                links.add(int(local.rsplit(":", 1)[1], 16))
    return links


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Uid:")[1].split()[1])  # effective uid


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cli(deployment: Deployment, *args: str, **env: str) -> str:
    """Run `broadcast ARGS` as the clerk would, with the deployment's settings; return its stdout."""
    done = subprocess.run(
        [exe("broadcast"), *args],
        env={**os.environ, **deployment.env, **{f"BROADCAST_{k}": v for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _provision(deployment: Deployment, speaker_id: str, *args: str, **env: str) -> None:
    stdout = _cli(
        deployment, "speakers", "provision", speaker_id, "--state-dir", str(deployment.tmp / "agents" / speaker_id),
        *args, **env,
    )  # fmt: skip
    deployment.configs[speaker_id] = deployment.tmp / f"{speaker_id}.json"
    deployment.configs[speaker_id].write_text(stdout)


def test_reload_after_a_new_speaker_keeps_everyone_connected(tmp_path: Path) -> None:
    need(mosquitto_binary(), "mosquitto is not installed")
    need(Path("/proc/net/tcp").exists(), "Linux /proc is needed to watch the connections")
    base = broker_folder()
    pki = make_pki(base)
    folder = base / "village-broadcast"
    server_port, speaker_port, tls_port = free_port(), free_port(), free_port()
    password = secrets.token_urlsafe(18)
    deployment = prepare(
        tmp_path, [],
        MQTT_URL=f"mqtt://127.0.0.1:{server_port}", MQTT_USERNAME="vb-server", MQTT_PASSWORD=password,
        SPEAKER_MQTT_URL=f"mqtt://127.0.0.1:{speaker_port}", MOSQUITTO_DIR=str(folder),
        MOSQUITTO_SERVER_LISTENER=f"127.0.0.1:{server_port}", MOSQUITTO_SPEAKER_LISTENER=f"127.0.0.1:{speaker_port}",
        MOSQUITTO_TLS_LISTENER=f"127.0.0.1:{tls_port}", MOSQUITTO_CERTFILE=str(pki.cert),
        MOSQUITTO_KEYFILE=str(pki.key),
    )  # fmt: skip
    observer: Any = None
    try:
        _provision(deployment, PLAIN)
        _provision(deployment, TLS, "--ca-file", str(pki.ca), SPEAKER_MQTT_URL=f"mqtts://127.0.0.1:{tls_port}")
        assert json.loads(deployment.configs[TLS].read_text())["ca_cert"] == pki.ca.read_text()
        _cli(deployment, "speakers", "broker-files", str(folder))
        broker = Proc([str(mosquitto_binary()), "-c", str(folder / "village-broadcast.conf")], tmp_path / "mq.log")
        deployment.procs.append(broker)
        for port in (server_port, speaker_port, tls_port):
            wait_for(lambda p=port: _port_open(p) or not broker.alive(), 15, f"mosquitto on {port}")
        assert broker.alive(), broker.output()
        assert _uid(broker.popen.pid) != 0, "Mosquitto runs as a non-root user"

        server = deployment.start_server()
        observer = connect(f"mqtt://127.0.0.1:{server_port}", client_id="observer", username="vb-server",
                           password=password)  # fmt: skip
        wills: list[dict[str, Any]] = []
        observer.subscribe(f"{deployment.prefix}/state/+", lambda m: wills.extend(_wills(m.payload)))
        agents = {PLAIN: deployment.start_agent(PLAIN), TLS: deployment.start_agent(TLS)}
        deployment.wait_online(PLAIN, TLS)
        ports = {PLAIN: speaker_port, TLS: tls_port}
        before = {sid: tcp_links(agents[sid].popen.pid, ports[sid]) for sid in agents}
        assert all(len(links) == 1 for links in before.values()), before
        server_before = wait_for(lambda: tcp_links(server.popen.pid, server_port), 30, "the worker's connections")

        # a new speaker: provision (rewrites MOSQUITTO_DIR), regenerate as documented, reload
        _provision(deployment, LATE)
        _cli(deployment, "speakers", "broker-files")
        os.kill(broker.popen.pid, signal.SIGHUP)
        agents[LATE] = deployment.start_agent(LATE)
        deployment.wait_online(LATE)  # its account exists only since the reload

        status, clip = http("POST", deployment.base + "/api/v1/clips", deployment.token, {"text": "请注意，这是测试。"})
        assert status == 201, clip
        body = {"clip_id": clip["id"], "targets": [TOWNSHIP], "volume": 80}
        status, item = http("POST", deployment.base + "/api/v1/broadcasts", deployment.token, body)
        assert status == 201, item
        for sid in (PLAIN, TLS, LATE):
            wait_for(lambda s=sid: deployment.delivery(item["id"], s)["state"] == "finished", 90, f"{sid} played")

        assert broker.alive()
        for sid in (PLAIN, TLS):
            assert tcp_links(agents[sid].popen.pid, ports[sid]) == before[sid], f"{sid} kept its connection"
        assert server_before <= tcp_links(server.popen.pid, server_port), "the worker kept its connections"
        assert observer.connected
        assert not [w for w in wills if w.get("speaker_id") in (PLAIN, TLS)], wills
    finally:
        if observer is not None:
            observer.close()
        deployment.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wills(payload: bytes) -> list[dict[str, Any]]:
    """The last-will states in a state message (a speaker the broker saw vanish)."""
    try:
        state = json.loads(payload)
    except ValueError:
        return []
    return [state] if isinstance(state, dict) and state.get("will") else []
