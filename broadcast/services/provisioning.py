"""Speaker provisioning: its agent configuration, its own broker account, and the broker's password/ACL files."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, not_found
from broadcast.models import Region, Speaker
from broadcast.platform import SERVER_USER
from broadcast.services import audit, regions
from speakers.acl import SpeakerAccess
from speakers.config import AgentConfig
from speakers.mosquitto import Listeners, parse_listener, password_hash, write_mosquitto_files
from speakers.signing import KeyPair
from speakers.transport import BrokerAddress

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)

__all__ = ["SERVER_USER", "Rotation", "agent_config", "provision", "read_ca_file", "rotate_server_password"]


def _utc_offset_minutes(platform: Platform) -> int:
    offset = datetime.now(platform.timezone).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


def read_ca_file(path: Path | str) -> str:
    """The PEM text of a CA certificate file, checked to hold at least one certificate and nothing else."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        certificates = x509.load_pem_x509_certificates(text.encode())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BroadcastError(
            "bad_ca_file",
            f"CA 证书文件无法使用（应为 PEM 格式的证书）：{path}",
            f"The CA file is not usable (a PEM certificate is expected): {path}",
        ) from exc
    logger.debug("CA file %s holds %d certificate(s)", path, len(certificates))
    return text


def _speaker_url(platform: Platform) -> str:
    """The broker URL for speakers, checked (a bad SPEAKER_MQTT_URL is an error before anything changes)."""
    url = platform.speaker_broker_url
    BrokerAddress.parse(url)
    return url


def agent_config(
    platform: Platform,
    tree: dict[str, Region],
    speaker: Speaker,
    *,
    password: str | None,
    state_root: Path,
    ca_cert: str | None = None,
) -> AgentConfig:
    """The agent configuration of one speaker (password None: an anonymous test broker)."""
    key = KeyPair.load(platform.signing_key_path)
    quiet = platform.settings["QUIET_HOURS"]
    return AgentConfig(
        speaker_id=speaker.id,
        broker_url=_speaker_url(platform),
        username=speaker.id if password else None,
        password=password,
        topic_prefix=platform.settings["TOPIC_PREFIX"],
        regions=regions.speaker_regions(tree, speaker),
        server_keys=[key.public_b64()],
        state_dir=state_root / speaker.id / "state",
        cache_dir=state_root / speaker.id / "cache",
        quiet_hours=[quiet] if quiet.strip() else [],
        utc_offset_minutes=_utc_offset_minutes(platform),
        default_volume=speaker.volume,
        ca_cert=ca_cert,
    )


def provision(
    session: Session,
    platform: Platform,
    speaker_id: str,
    *,
    state_root: Path,
    actor: str = "cli",
    ca_file: Path | str | None = None,
) -> AgentConfig:
    """Give a speaker a new broker password (only its hash is kept) and return its full configuration.

    `ca_file` (default: setting SPEAKER_CA_FILE) puts that CA certificate into the configuration: the agent
    verifies an mqtts:// broker (and https:// media) with it. The URL and the CA are checked first, so a bad
    one changes nothing.
    """
    speaker = session.get(Speaker, speaker_id)
    if speaker is None:
        raise not_found("终端", "Speaker", speaker_id)
    _speaker_url(platform)
    ca_file = ca_file or platform.settings["SPEAKER_CA_FILE"] or None
    ca_cert = read_ca_file(ca_file) if ca_file else None
    password = secrets.token_urlsafe(18)
    speaker.broker_password_hash = password_hash(password)
    audit.record(session, actor, "speaker.provision", object_type="speaker", object_id=speaker.id)
    session.flush()
    return agent_config(
        platform, regions.load_tree(session), speaker, password=password, state_root=state_root, ca_cert=ca_cert
    )


def broker_accesses(session: Session) -> list[SpeakerAccess]:
    """Broker accounts of every provisioned speaker, with the region topics each may read."""
    tree = regions.load_tree(session)
    query = select(Speaker).where(Speaker.enabled.is_(True), Speaker.broker_password_hash.is_not(None))
    return [
        SpeakerAccess(
            speaker_id=s.id,
            username=s.id,
            regions=tuple(regions.speaker_regions(tree, s)),
            password_hash=s.broker_password_hash,
        )
        for s in session.scalars(query.order_by(Speaker.id))
    ]


def mosquitto_listeners(platform: Platform) -> Listeners:
    """The listeners of the generated Mosquitto configuration, from the MOSQUITTO_* settings."""
    settings = platform.settings
    server_bind, server_port = parse_listener(settings["MOSQUITTO_SERVER_LISTENER"], default_bind="127.0.0.1")
    speaker_bind, speaker_port = parse_listener(settings["MOSQUITTO_SPEAKER_LISTENER"])
    tls_bind, tls_port = None, None
    if settings["MOSQUITTO_TLS_LISTENER"].strip():
        tls_bind, tls_port = parse_listener(settings["MOSQUITTO_TLS_LISTENER"])
    return Listeners(
        speaker_port=speaker_port,
        server_port=server_port,
        server_bind=server_bind or "127.0.0.1",
        speaker_bind=speaker_bind,
        tls_port=tls_port,
        tls_bind=tls_bind,
        certfile=settings["MOSQUITTO_CERTFILE"] or None,
        keyfile=settings["MOSQUITTO_KEYFILE"] or None,
    )


def write_broker_files(
    session: Session, platform: Platform, folder: Path | None = None, *, server_password: str | None = None
) -> Path:
    """Write the Mosquitto-format files: into `folder` for Mosquitto, else the embedded broker's folder.

    Mosquitto's folder also gets `village-broadcast.conf` with the MOSQUITTO_* listeners.
    """
    target = folder or platform.broker_dir
    listeners = mosquitto_listeners(platform) if folder is not None else None
    user, password = platform.broker_account()
    write_mosquitto_files(
        target,
        broker_accesses(session),
        user or SERVER_USER,
        server_password or password or "",
        prefix=platform.settings["TOPIC_PREFIX"],
        listeners=listeners,
    )
    return target


def sync_broker_files(session: Session, platform: Platform) -> list[Path]:
    """After a speaker change: rewrite the embedded broker's files and those in MOSQUITTO_DIR (when set)."""
    written = []
    if platform.embedded_broker:
        written.append(write_broker_files(session, platform))
    if platform.settings["MOSQUITTO_DIR"]:
        written.append(write_broker_files(session, platform, Path(platform.settings["MOSQUITTO_DIR"])))
    return written


@dataclass(frozen=True)
class Rotation:
    """What `rotate_server_password` did: the account, the new password, where it went, what is left to do."""

    user: str
    password: str
    written: tuple[Path, ...]  # broker folders rewritten with the new password
    in_settings: bool  # True: the operator must put the password into BROADCAST_MQTT_PASSWORD


def rotate_server_password(
    session: Session, platform: Platform, folder: Path | None = None, *, actor: str = "cli"
) -> Rotation:
    """Give the server's broker account a new password and rewrite the broker files that hold its hash.

    Embedded broker without MQTT_USERNAME: the instance's password file is replaced (the running server keeps
    its connections and uses the new one when restarted). Otherwise the password lives in the settings: the
    caller shows it once so the operator can put it there; `folder` (default MOSQUITTO_DIR) is rewritten.
    """
    user, _old = platform.broker_account()
    if not user:
        raise BroadcastError(
            "no_server_account",
            "服务器没有消息服务器账号：请先设置 BROADCAST_MQTT_USERNAME。",
            "The server has no broker account: set BROADCAST_MQTT_USERNAME first.",
        )
    folder = folder or (Path(platform.settings["MOSQUITTO_DIR"]) if platform.settings["MOSQUITTO_DIR"] else None)
    if folder is not None:
        mosquitto_listeners(platform)  # a bad listener setting fails before anything changes
    password = secrets.token_urlsafe(24)
    in_settings = not (platform.embedded_broker and not platform.settings["MQTT_USERNAME"])
    written: list[Path] = []
    if not in_settings:
        platform.write_server_password(password)
    if platform.embedded_broker:
        written.append(write_broker_files(session, platform, server_password=password))
    if folder is not None:
        written.append(write_broker_files(session, platform, folder, server_password=password))
    audit.record(session, actor, "broker.rotate_password", object_type="broker_account", object_id=user)
    logger.info("broker password of %s rotated; files rewritten in %d folder(s)", user, len(written))
    return Rotation(user, password, tuple(written), in_settings)
