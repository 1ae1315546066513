"""Process wiring: `broadcast run` (everything on one machine) and `broadcast worker` (production)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from broadcast import create_app
from broadcast.errors import BroadcastError
from broadcast.platform import Platform, connect_host, write_private
from broadcast.setup import initialize, password_banner

logger = logging.getLogger(__name__)


def _wait_for_signal(stop: threading.Event | None = None) -> None:
    """Block until SIGINT/SIGTERM, or until `stop` is set by someone else (a lost lease)."""
    stop = stop or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run_worker(platform: Platform) -> None:
    """Run the worker until SIGINT/SIGTERM; a standby waits for the lease first. Exits 1 if the lease is lost."""
    from broadcast.worker import Worker

    if not platform.db.is_initialized():
        raise SystemExit("database not initialized: run `broadcast init` first")
    worker = Worker(platform)
    worker.start_when_leased()
    try:
        _wait_for_signal(worker.lost)
    finally:
        worker.stop()
    if worker.lost.is_set():
        raise SystemExit(1)  # systemd starts it again, as a standby


def _simulator_command(fleet: Path, sinks: Path) -> list[str]:
    exe = shutil.which("speaker-agent", path=str(Path(sys.executable).parent)) or shutil.which("speaker-agent")
    base = [exe] if exe else [sys.executable, "-m", "speakers.cli"]
    return [*base, "simulate", "--fleet", str(fleet), "--sink-root", str(sinks)]


def _probe_port(host: str, port: int) -> None:
    """Raise OSError when the web address cannot be bound (bound the way waitress binds it)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def run_all(
    platform: Platform, *, host: str, port: int, demo: bool, threads: int = 16, echo: Callable[[str], Any] = print
) -> None:
    """Start the embedded broker, the worker, (the demo fleet) and the web server; stop on a signal.

    Raises:
        BroadcastError: "already_running" when another `broadcast run` holds this instance.
    """
    from broadcast.lease import InstanceLock

    instance_lock = InstanceLock(platform.instance)
    instance_lock.acquire()  # before anything else: a second start must not touch the first one's broker files
    try:
        _run_locked(platform, host=host, port=port, demo=demo, threads=threads, echo=echo)
    finally:
        instance_lock.release()


def _run_locked(
    platform: Platform,
    *,
    host: str,
    port: int,
    demo: bool,
    threads: int,
    echo: Callable[[str], Any],
) -> None:
    password = None
    if not platform.db.is_initialized():
        password = initialize(platform)
    else:
        platform.db.upgrade()
    said: list[bool] = []

    def announce() -> None:
        """The once-only admin password, printed once: last of the start lines, or as a failed start ends."""
        if password and not said:
            said.append(True)
            echo(password_banner("admin", password))

    try:
        _serve(platform, host=host, port=port, demo=demo, threads=threads, echo=echo, announce=announce)
    finally:
        announce()  # a first start that fails must not lose the only copy


def web_server(app: Any, host: str, port: int, threads: int) -> Any:
    """The waitress server for `app` (run it with .run() in a thread, stop it with .close() from another).

    It waits with poll(), not select(): a close from another thread can leave the listening socket's closed
    descriptor among those the loop waits on, which select() refuses with EBADF, killing the server's thread.
    """
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="village-broadcast", asyncore_use_poll=True)


def _serve(
    platform: Platform,
    *,
    host: str,
    port: int,
    demo: bool,
    threads: int,
    echo: Callable[[str], Any],
    announce: Callable[[], None],
) -> None:
    from broadcast.worker import Worker

    if demo:
        _seed_demo(platform, echo)
    broker = _start_embedded_broker(platform) if platform.embedded_broker else None
    web_host = connect_host(host)
    app = create_app(platform=platform)
    try:
        _probe_port(host, port)  # waitress leaks a pipe when its own bind fails: find out before
        server = web_server(app, host, port, threads)
    except OSError as exc:
        if broker is not None:
            broker.stop()
        raise BroadcastError(
            "port_unavailable",
            f"网页端口 {host}:{port} 无法使用（{exc.strerror}），请用 --port 换一个端口。",
            f"The web port {host}:{port} is not available ({exc.strerror}); choose another with --port.",
            kind="unavailable",
        ) from exc
    actual_port = server.effective_port  # type: ignore[union-attr]
    public_url = platform.settings["PUBLIC_URL"] or f"http://{web_host}:{actual_port}"
    runtime = {
        "public_url": public_url,
        "mqtt_url": broker.url if broker else platform.mqtt_url,
        "mqtt_port": broker.port if broker else None,
        "pid": os.getpid(),
    }
    write_private(platform.runtime_file, json.dumps(runtime).encode())
    worker = Worker(platform)
    worker.start_when_leased()
    simulator = _start_simulator(platform, echo) if demo else None
    acl_watch = _AclWatcher(platform, broker) if broker else None
    echo(f"智慧广播平台已启动 / village-broadcast is running: http://{web_host}:{actual_port}/")
    echo(f"MQTT broker: {runtime['mqtt_url']}   instance: {platform.instance}")
    announce()  # last, so the once-only password is not scrolled away by the lines above
    web = threading.Thread(target=server.run, name="web", daemon=True)
    web.start()
    try:
        _wait_for_signal()
    finally:
        echo("正在停止 / stopping ...")
        server.close()  # type: ignore[union-attr]
        if acl_watch is not None:
            acl_watch.stop()
        if simulator is not None:
            simulator.terminate()
            try:
                simulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                simulator.kill()
        worker.stop()
        if broker is not None:
            broker.stop()
        platform.runtime_file.unlink(missing_ok=True)


def _start_embedded_broker(platform: Platform) -> Any:
    """The in-process broker, with a password for every account and each speaker held to its own topics."""
    from broadcast.services.provisioning import write_broker_files
    from speakers.broker import EmbeddedBroker

    with platform.db.transaction() as session:
        folder = write_broker_files(session, platform)
    broker = EmbeddedBroker(
        platform.settings["MQTT_HOST"],
        platform.settings["MQTT_PORT"],
        password_file=folder / "passwd",
        acl_file=folder / "acl",  # re-read when it changes: at each connect and subscribe, and by _AclWatcher
    )
    broker.start()
    return broker


class _AclWatcher:
    """Re-reads the ACL file when `broadcast speakers provision` rewrites it (the password file reloads itself)."""

    def __init__(self, platform: Platform, broker: Any, interval_s: float = 3.0) -> None:
        self.path = platform.broker_dir / "acl"
        self.broker = broker
        self._seen = self.path.stat().st_mtime_ns if self.path.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="acl-watch", daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        from speakers.mosquitto import parse_mosquitto_acl

        while not self._stop.wait(interval_s):
            try:
                mtime = self.path.stat().st_mtime_ns
                if mtime != self._seen:
                    self.broker.set_acl(parse_mosquitto_acl(self.path.read_text()))
                    self._seen = mtime
                    logger.info("broker ACL reloaded")
            except OSError:
                logger.warning("cannot read %s", self.path)

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        self._thread.join(timeout=5)


def _seed_demo(platform: Platform, echo: Callable[[str], Any]) -> None:
    from broadcast import demo

    with platform.db.transaction() as session:
        made = demo.seed(session)
    if made:
        echo(f"演示县：通山县（2 个乡镇、6 个村、12 个网格、{made} 台终端）已创建 / demo county seeded")
    demo.write_fleet(platform, platform.instance / "demo-fleet.json")


def _start_simulator(platform: Platform, echo: Callable[[str], Any]) -> subprocess.Popen[bytes]:
    fleet = platform.instance / "demo-fleet.json"
    sinks = platform.instance / "sinks"
    sinks.mkdir(exist_ok=True)
    count = len(json.loads(fleet.read_text()))
    log = (platform.instance / "demo-fleet.log").open("ab")
    process = subprocess.Popen(
        _simulator_command(fleet, sinks),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=partial(_die_with_parent, os.getpid()),
    )
    echo(f"模拟终端 {count} 台已启动，播放的音频写入 {sinks}/<终端编号>/")
    echo(f"{count} simulated speakers started; each writes what it plays to {sinks}/<speaker_id>/")
    return process


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies, even by kill -9."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the simulator outlives a killed parent
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
