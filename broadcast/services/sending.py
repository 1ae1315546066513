"""Sending a recorded broadcast: issue its signed play command, commit, publish, mark deliveries sent."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from broadcast.models import Broadcast, Clip
from broadcast.services import commands

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)


def send_broadcast(session: Session, platform: Platform, item: Broadcast) -> bool:
    """Commit the broadcast with its command first (nothing is lost if the broker is down), then publish."""
    clip = session.get(Clip, item.clip_id)
    assert clip is not None
    settings = platform.settings
    body = commands.play_body(
        item, clip, secret=settings["SECRET_KEY"], public_url=platform.public_url, url_ttl_s=settings["MEDIA_URL_TTL_S"]
    )
    command = commands.issue(
        session, kind="play", body=body, targets=item.wire_targets, expires_at=item.expires_at, broadcast_id=item.id
    )
    session.commit()
    try:
        messenger = platform.messenger()
    except Exception as exc:  # no broker right now: the worker publishes it when the broker is back
        logger.warning("broker unavailable, broadcast %s waits for the worker: %s", item.id, exc)
        return False
    sent = commands.send(platform.db, messenger, command)
    session.refresh(item)
    return sent
