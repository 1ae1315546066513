"""A deployment for end-to-end tests: an initialized instance with the demo county, provisioned speakers,
and helpers to start `broadcast run` and real `speaker-agent` processes on free ports."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.e2e.procs import Proc, exe, http, url_up, wait_for


@dataclass
class Deployment:
    """One instance folder and the processes started for it."""

    tmp: Path
    platform: Any
    env: dict[str, str]
    token: str
    port: int
    mqtt_port: int
    configs: dict[str, Path] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The web server's URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def broker(self) -> str:
        """The embedded broker's URL."""
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def prefix(self) -> str:
        """The topic prefix of this deployment."""
        return self.env["BROADCAST_TOPIC_PREFIX"]

    def sink(self, speaker_id: str) -> Path:
        """Where an agent's file sink writes."""
        return self.tmp / "sinks" / speaker_id

    def start_server(self, name: str = "server") -> Proc:
        """`broadcast run` (web, worker, embedded broker unless MQTT_URL is set); returns once it answers."""
        proc = Proc(
            [exe("broadcast"), "run", "--port", str(self.port), "--mqtt-port", str(self.mqtt_port)],
            self.tmp / f"{name}.log",
            env=self.env,
        )
        self.procs.append(proc)
        wait_for(lambda: url_up(self.base + "/api/v1/time"), 60, "the server")
        return proc

    def start_agent(self, speaker_id: str, name: str | None = None) -> Proc:
        """A real agent process for a provisioned speaker, with a file sink."""
        proc = Proc(
            [
                exe("speaker-agent"),
                "run",
                "--config",
                str(self.configs[speaker_id]),
                "--sink",
                str(self.sink(speaker_id)),
            ],
            self.tmp / f"{name or speaker_id}.log",
            env=self.env,
        )
        self.procs.append(proc)
        return proc

    def online(self, speaker_id: str) -> bool:
        """What the server thinks of a speaker's connection."""
        items = http("GET", self.base + "/api/v1/speakers", self.token)[1]["items"]
        return any(s["id"] == speaker_id and s["online"] for s in items)

    def wait_online(self, *speaker_ids: str) -> None:
        """Wait until the server sees all of them online."""
        for speaker_id in speaker_ids:
            wait_for(lambda s=speaker_id: self.online(s), 60, f"{speaker_id} online")

    def delivery(self, broadcast_id: int, speaker_id: str) -> dict[str, Any]:
        """One speaker's delivery of a broadcast, as the API shows it."""
        body = http("GET", f"{self.base}/api/v1/broadcasts/{broadcast_id}", self.token)[1]
        return next(d for d in body["deliveries"] if d["speaker_id"] == speaker_id)

    def stop(self) -> None:
        """Stop every process and release the database."""
        for proc in reversed(self.procs):
            proc.stop()
        self.platform.close()


def prepare(tmp_path: Path, speakers: list[str], **settings: str) -> Deployment:
    """Initialize an instance (admin, demo county, API token) and provision `speakers` with broker accounts."""
    from broadcast import demo
    from broadcast.platform import Platform
    from broadcast.services import accounts, provisioning
    from broadcast.setup import initialize

    port, mqtt_port = free_port(), free_port()
    values = {
        "TOPIC_PREFIX": "e2e" + secrets.token_hex(4),
        "QUIET_HOURS": "",
        "TTS_ENGINES": "espeak",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MQTT_PORT": str(mqtt_port),
        **settings,
    }
    instance = tmp_path / "instance"
    env = {"BROADCAST_INSTANCE": str(instance), **{f"BROADCAST_{k}": v for k, v in values.items()}}
    platform = Platform.from_settings(instance, values)
    initialize(platform, "admin", "admin-password-123")
    deployment = Deployment(tmp_path, platform, env, "", port, mqtt_port)
    with platform.db.transaction() as session:
        demo.seed(session)
        deployment.token = accounts.create_token(session, accounts.find_user(session, "admin"))
        for speaker_id in speakers:
            config = provisioning.provision(session, platform, speaker_id, state_root=tmp_path / "agents")
            deployment.configs[speaker_id] = tmp_path / f"{speaker_id}.json"
            deployment.configs[speaker_id].write_text(config.to_json())
    return deployment
