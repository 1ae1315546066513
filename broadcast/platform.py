"""Everything a request, a job or a CLI command needs, built from settings without touching the network."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.services import audit_chain
from broadcast.services.broadcasts import Rules
from broadcast.services.quiet_hours import QuietHours
from broadcast.settings import load_settings
from media import MediaConfig, MediaStore

logger = logging.getLogger(__name__)
BROKER_RETRY_S = 5.0
SERVER_USER = "vb-server"  # the server's account on a broker whose files we write


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def media_config(settings: dict[str, Any]) -> MediaConfig:
    """The media package's settings, from ours."""
    engines = tuple(e.strip() for e in str(settings["TTS_ENGINES"]).split(",") if e.strip())
    tone_s = float(settings["ALERT_TONE_S"])
    if not 1.0 <= tone_s <= 25.0:
        raise BroadcastError(
            "invalid_setting",
            f"设置 BROADCAST_ALERT_TONE_S 必须在 1 到 25 秒之间：{tone_s:g}",
            f"Setting BROADCAST_ALERT_TONE_S must be between 1 and 25 seconds: {tone_s:g}",
        )
    return MediaConfig(
        target_lufs=settings["TARGET_LUFS"],
        true_peak_dbtp=settings["TRUE_PEAK_DBTP"],
        bitrate_kbps=settings["BITRATE_KBPS"],
        max_upload_bytes=settings["MAX_UPLOAD_MB"] * 1024 * 1024,
        max_duration_s=float(settings["MAX_DURATION_S"]),
        max_text_chars=settings["MAX_TEXT_CHARS"],
        tts_engines=engines,
        edge_voice=settings["EDGE_VOICE"],
        piper_model=settings["PIPER_MODEL"] or None,
        attention_tone_s=tone_s,
    )


EVERY_INTERFACE = ("0.0.0.0", "::", "")  # noqa: S104 - bind addresses, never connected to


def without_credentials(url: str) -> str:
    """The URL without any user:password@ part (what a speaker's configuration may carry)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect_host(bind_host: str) -> str:
    """The address this machine connects to for a bind address."""
    return "127.0.0.1" if bind_host in EVERY_INTERFACE else bind_host


@dataclass
class Platform:
    """Settings, database, media store and keys of one deployment; the broker connection opens lazily."""

    settings: dict[str, Any]
    db: Database
    media_store: MediaStore
    media: MediaConfig
    instance: Path
    _messenger: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _broker_down_until: float = field(default=0.0, repr=False)

    @classmethod
    def from_settings(cls, instance: Path, overrides: dict[str, Any] | None = None) -> Platform:
        """Build the platform for an instance folder (creating the folder, not the database)."""
        settings = load_settings(instance, overrides)
        instance.mkdir(parents=True, exist_ok=True)
        media_dir = Path(settings["MEDIA_DIR"])
        media_dir.mkdir(parents=True, exist_ok=True)
        if not settings["SECRET_KEY"]:
            settings["SECRET_KEY"] = cls._secret_key(instance)
        database = Database(settings["DATABASE_URL"])
        # Every session carries the audit chain's key (derived from the secret key, which is not in the database).
        database.sessions.configure(info={audit_chain.KEY_INFO: audit_chain.derive_key(settings["SECRET_KEY"])})
        return cls(
            settings=settings,
            db=database,
            media_store=MediaStore(media_dir),
            media=media_config(settings),
            instance=instance,
        )

    @staticmethod
    def _secret_key(instance: Path) -> str:
        path = instance / "secret_key"
        if not path.exists():
            write_private(path, secrets.token_hex(32).encode())
        return path.read_text().strip()

    @cached_property
    def rules(self) -> Rules:
        """The rules every broadcast is checked against, parsed once from the settings."""
        settings = self.settings
        return Rules(
            quiet_hours=QuietHours.parse(settings["QUIET_HOURS"]),
            timezone=self.timezone,
            start_lead_s=settings["START_LEAD_MS"] / 1000,
            ttl_s=float(settings["COMMAND_TTL_S"]),
            default_volume=settings["DEFAULT_VOLUME"],
            max_repeat=settings["MAX_REPEAT"],
            approval_required=settings["APPROVAL_REQUIRED"],  # approvals
        )

    @property
    def timezone(self) -> ZoneInfo:
        """The deployment's local time zone."""
        return ZoneInfo(self.settings["TIMEZONE"])

    @property
    def signing_key_path(self) -> Path:
        """The server's Ed25519 private key (made by `broadcast init`)."""
        return self.instance / "keys" / "server_ed25519.pem"

    @property
    def runtime_file(self) -> Path:
        """Where `broadcast run` records the URLs it actually serves, for other commands on this machine."""
        return self.instance / "runtime.json"

    def _runtime(self) -> dict[str, Any]:
        try:
            return json.loads(self.runtime_file.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def public_url(self) -> str:
        """Base URL speakers fetch media from: the setting, else what `broadcast run` serves."""
        return self.settings["PUBLIC_URL"] or self._runtime().get("public_url") or "http://127.0.0.1:8080"

    @property
    def mqtt_url(self) -> str:
        """The broker every process talks to: the external one, or the embedded one on this machine.

        Any user:password in MQTT_URL is left out (it may be logged); `broker_account()` gives the account.
        """
        if self.settings["MQTT_URL"]:
            return without_credentials(self.settings["MQTT_URL"])
        running = self._runtime().get("mqtt_url")
        if running:
            return running
        return f"mqtt://{connect_host(self.settings['MQTT_HOST'])}:{self.settings['MQTT_PORT']}"

    @property
    def broker_dir(self) -> Path:
        """Where the embedded broker's passwd and acl files live (Mosquitto format)."""
        return self.instance / "broker"

    @property
    def embedded_broker(self) -> bool:
        """True when this deployment runs its own broker (no external MQTT_URL)."""
        return not self.settings["MQTT_URL"]

    @property
    def server_password_file(self) -> Path:
        """The server's broker password made for the embedded broker (0600, never in settings or logs)."""
        return self.broker_dir / "server_password"

    def broker_account(self) -> tuple[str | None, str | None]:
        """The server's broker account: from settings (or MQTT_URL's user:password), or the embedded broker's."""
        if self.settings["MQTT_USERNAME"]:
            return self.settings["MQTT_USERNAME"], self.settings["MQTT_PASSWORD"] or None
        if not self.embedded_broker:
            parts = urlsplit(self.settings["MQTT_URL"])
            if parts.username:
                return unquote(parts.username), unquote(parts.password) if parts.password else None
            return None, None
        path = self.server_password_file
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24).encode())
        return SERVER_USER, path.read_text().strip()

    def write_server_password(self, password: str) -> None:
        """Replace the embedded broker's server password file (0600)."""
        write_private(self.server_password_file, password.encode())

    @property
    def speaker_broker_url(self) -> str:
        """The broker URL speakers are given: SPEAKER_MQTT_URL, else derived; never with user:password in it."""
        if self.settings["SPEAKER_MQTT_URL"]:
            url = self.settings["SPEAKER_MQTT_URL"]
        elif self.settings["MQTT_URL"]:
            url = self.settings["MQTT_URL"]
        else:
            host = self.settings["MQTT_HOST"]
            if host in EVERY_INTERFACE:  # speakers reach the broker at the host the web is reached at
                host = urlparse(self.public_url).hostname or "127.0.0.1"
            url = f"mqtt://{host}:{self._runtime().get('mqtt_port') or self.settings['MQTT_PORT']}"
        return without_credentials(url)

    def messenger(self) -> Any:
        """This process's broker connection and command publisher, opened on first use (after any fork).

        After a failed connection the next attempts fail at once for a few seconds, so requests made while
        the broker is down do not each wait for a timeout (their commands wait for the worker instead).
        """
        with self._lock:
            if self._messenger is None:
                from broadcast.messaging import Messenger

                if time.monotonic() < self._broker_down_until:
                    raise ConnectionError("broker unavailable (retrying shortly)")
                try:
                    self._messenger = Messenger.connect(self)
                except Exception:
                    self._broker_down_until = time.monotonic() + BROKER_RETRY_S
                    raise
            return self._messenger

    def close(self) -> None:
        """Close the broker connection and the database pool."""
        with self._lock:
            if self._messenger is not None:
                self._messenger.close()
                self._messenger = None
        self.db.dispose()
