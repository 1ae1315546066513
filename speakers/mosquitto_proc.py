"""Run a Mosquitto broker process with generated files (tests, benchmarks, one-box trials)."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from speakers.errors import SpeakerError, unavailable
from speakers.fsutil import atomic_write

logger = logging.getLogger(__name__)

ENV_OVERRIDE = "BROADCAST_MOSQUITTO"


def mosquitto_binary() -> str | None:
    """The mosquitto binary: $BROADCAST_MOSQUITTO if set, else `mosquitto` on PATH (None if absent)."""
    return os.environ.get(ENV_OVERRIDE) or shutil.which("mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MosquittoProcess:
    """A mosquitto child process listening on host:port, configured from files in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        max_connections: int = -1,
        conf_file: Path | None = None,
        server_port: int | None = None,
        tls_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.password_file = password_file
        self.acl_file = acl_file
        self.max_connections = max_connections
        self.conf_file = Path(conf_file) if conf_file is not None else None  # run as is instead of ours
        self.server_port = server_port
        self.tls_port = tls_port
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def generated(cls, folder: Path, listeners: Any) -> MosquittoProcess:
        """Run `folder/village-broadcast.conf` as `write_mosquitto_files` wrote it (speakers at `url`)."""
        return cls(
            folder,
            port=listeners.speaker_port,
            conf_file=Path(folder) / "village-broadcast.conf",
            server_port=listeners.server_port,
            tls_port=listeners.tls_port,
        )

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def reload(self) -> None:
        """Send SIGHUP: Mosquitto re-reads its password and ACL files; connected clients stay connected."""
        if self._process is not None:
            self._process.send_signal(signal.SIGHUP)

    @property
    def server_url(self) -> str:
        """mqtt://host:port of the server's listener (generated configuration only)."""
        return f"mqtt://{self.host}:{self.server_port or self.port}"

    @property
    def url(self) -> str:
        """mqtt://host:port"""
        return f"mqtt://{self.host}:{self.port}"

    def config_text(self) -> str:
        """The mosquitto.conf this process runs with (ad-hoc brokers; see `generated` for the real layout)."""
        lines = [
            f"listener {self.port} {self.host}",
            f"max_connections {self.max_connections}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_queued_messages 0",  # 0 = unlimited: a busy receipt consumer must not lose receipts
            "max_inflight_messages 1000",  # not 20: the receipt consumer must not be paced by its round trips
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to a user that cannot enter a private test folder
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until it accepts connections."""
        binary = mosquitto_binary()
        if binary is None:
            raise SpeakerError(
                "speakers.no_mosquitto",
                "找不到 mosquitto 程序。",
                f"mosquitto not found (set {ENV_OVERRIDE} or install it).",
                kind="unavailable",
            )
        conf = self.conf_file
        if conf is None:
            conf = self.workdir / "mosquitto.conf"
            atomic_write(conf, self.config_text(), durable=False)
        command = [binary, "-c", str(conf)]
        logger.debug("running %s", shlex.join(command))
        log = self.workdir / "mosquitto.log"
        with open(log, "ab") as errors:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + timeout
        ports = [self.port] + [p for p in (self.server_port, self.tls_port) if p]
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                self._process = None
                raise unavailable(
                    "speakers.mosquitto_failed", f"mosquitto 启动失败：{stderr}", f"mosquitto failed: {stderr}"
                )
            try:
                for port in ports:
                    with socket.create_connection((self.host, port), timeout=0.2):
                        pass
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise unavailable("speakers.mosquitto_failed", "mosquitto 未能及时启动。", "mosquitto did not start in time.")

    def stop(self) -> None:
        """Terminate mosquitto and wait for it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> MosquittoProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
