"""Rotating the server's Ed25519 signing key: announce the next key under the current one, then switch."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from broadcast.errors import BroadcastError
from broadcast.models import Region
from broadcast.services import audit, commands
from speakers.server import key_announcement
from speakers.signing import KeyPair

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
ANNOUNCEMENT_TTL_S = 30 * 86400  # a speaker offline for weeks still learns the new key when it returns


def rotate(platform: Platform, *, retire_after_s: float, actor: str) -> str:
    """Announce a new key to every county topic, signed with the current key, and make it current.

    Raises:
        BroadcastError: the announcement could not be published (the current key stays in use).
    """
    current_path = platform.signing_key_path
    current = KeyPair.load(current_path)
    new = KeyPair.generate()
    pending = current_path.with_name("server_ed25519.next.pem")
    new.save(pending)
    with platform.db.transaction() as session:
        roots = list(session.scalars(select(Region.code).where(Region.parent_code.is_(None))))
        if not roots:
            raise BroadcastError("no_regions", "还没有行政区域，无需轮换。", "There are no regions to announce to.")
        announcement = key_announcement(new, retire_previous_at=time.time() + retire_after_s)
        command = commands.issue(
            session,
            kind="key",
            body=announcement.to_dict(),
            targets=[f"region:{code}" for code in roots],
            expires_at=time.time() + ANNOUNCEMENT_TTL_S,
        )
        audit.record(session, actor, "key.announce", object_type="key", object_id=new.key_id, previous=current.key_id)
    messenger = platform.messenger()
    if not commands.send(platform.db, messenger, command):
        raise BroadcastError(
            "broker_unavailable",
            "消息服务器不可用，密钥未轮换。",
            "The broker is unavailable; the key was not rotated.",
            kind="unavailable",
        )
    retired = current_path.with_name(f"server_ed25519.{current.key_id}.retired.pem")
    os.replace(current_path, retired)
    os.replace(pending, current_path)
    with platform.db.transaction() as session:
        audit.record(session, actor, "key.rotate", object_type="key", object_id=new.key_id, previous=current.key_id)
    logger.info("signing key rotated %s -> %s", current.key_id, new.key_id)
    return new.key_id
