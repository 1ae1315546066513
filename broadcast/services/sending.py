"""Sending a recorded broadcast: issue its signed play command, commit, publish, mark deliveries sent."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from broadcast.models import Broadcast, Clip
from broadcast.services import commands

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)


def hold_lead(item: Broadcast, lead_s: float, now: float | None = None) -> None:
    """Move a start that is nearer than the lead to now + lead (and its expiry with it).

    The start was chosen when the request arrived; recording a county's deliveries takes time, and a start
    already past when the command goes out would make every speaker start late, each at its own moment.
    """
    now = time.time() if now is None else now
    late = now + lead_s - item.start_at
    if late > 0:
        item.start_at += late
        item.expires_at += late


def send_broadcast(
    session: Session, platform: Platform, item: Broadcast, *, inline: bool = True, lead_s: float | None = None
) -> bool:
    """Commit the broadcast with its command first (nothing is lost if the broker is down), then publish.

    `inline=False` keeps a small emergency clip out of the command (the attention tone: speakers hold it);
    `lead_s` replaces START_LEAD_MS as the least time between now and the start.
    """
    if item.status == "pending_approval":  # approvals hook: nothing is issued until an approver says yes
        session.commit()
        return False
    clip = session.get(Clip, item.clip_id)
    assert clip is not None
    settings = platform.settings
    now = time.time()  # the start is held a full lead after this moment, which the command records as issued
    hold_lead(item, settings["START_LEAD_MS"] / 1000 if lead_s is None else lead_s, now)
    store = platform.media_store
    inline = inline and item.priority in commands.INLINE_PRIORITIES and store.exists(clip.sha256)
    body = commands.play_body(
        item,
        clip,
        secret=settings["SECRET_KEY"],
        public_url=platform.public_url,
        url_ttl_s=settings["MEDIA_URL_TTL_S"],
        media_file=store.path(clip.sha256) if inline else None,
        inline_max_bytes=settings["INLINE_MEDIA_MAX_BYTES"],
    )
    command = commands.issue(
        session,
        kind="play",
        body=body,
        targets=item.wire_targets,
        expires_at=item.expires_at,
        broadcast_id=item.id,
        issued_at=now,
    )
    session.commit()
    try:
        messenger = platform.messenger()
    except Exception as exc:  # no broker right now: the worker publishes it when the broker is back
        logger.warning("broker unavailable, broadcast %s waits for the worker: %s", item.id, exc)
        return False
    sent = commands.send(platform.db, messenger, command, first_resend_s=settings["RESEND_FIRST_S"])
    session.refresh(item)
    return sent
