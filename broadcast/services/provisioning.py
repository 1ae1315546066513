"""Speaker provisioning: its agent configuration, its own broker account, and the broker's password/ACL files."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import not_found
from broadcast.models import Region, Speaker
from broadcast.services import audit, regions
from speakers.acl import SpeakerAccess
from speakers.config import AgentConfig
from speakers.mosquitto import password_hash, write_mosquitto_files
from speakers.signing import KeyPair

if TYPE_CHECKING:
    from broadcast.platform import Platform

SERVER_USER = "vb-server"


def _utc_offset_minutes(platform: Platform) -> int:
    from datetime import datetime

    offset = datetime.now(platform.timezone).utcoffset()
    return int(offset.total_seconds() // 60) if offset else 0


def agent_config(
    platform: Platform, tree: dict[str, Region], speaker: Speaker, *, password: str | None, state_root: Path
) -> AgentConfig:
    """The agent configuration of one speaker (password None: an anonymous test broker)."""
    key = KeyPair.load(platform.signing_key_path)
    quiet = platform.settings["QUIET_HOURS"]
    return AgentConfig(
        speaker_id=speaker.id,
        broker_url=platform.speaker_broker_url,
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
    )


def provision(
    session: Session, platform: Platform, speaker_id: str, *, state_root: Path, actor: str = "cli"
) -> AgentConfig:
    """Give a speaker a new broker password (only its hash is kept) and return its full configuration."""
    speaker = session.get(Speaker, speaker_id)
    if speaker is None:
        raise not_found("终端", "Speaker", speaker_id)
    password = secrets.token_urlsafe(18)
    speaker.broker_password_hash = password_hash(password)
    audit.record(session, actor, "speaker.provision", object_type="speaker", object_id=speaker.id)
    session.flush()
    return agent_config(platform, regions.load_tree(session), speaker, password=password, state_root=state_root)


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


def write_broker_files(session: Session, platform: Platform, folder: Path | None = None) -> Path:
    """Write the Mosquitto-format passwd and acl files (the embedded broker reads the same ones)."""
    folder = folder or platform.broker_dir
    user, password = platform.broker_account()
    write_mosquitto_files(
        folder, broker_accesses(session), user or SERVER_USER, password or "", prefix=platform.settings["TOPIC_PREFIX"]
    )
    return folder
