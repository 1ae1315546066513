"""Schedule snapshots: each speaker is sent its upcoming plays, signed, so it plays them with the link down."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.models import Broadcast, Clip, Delivery
from broadcast.services import alert_tone, commands
from broadcast.services.handoff import Handoff

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
HORIZON_S = 36 * 3600  # at least the next 24 h, with room for a day of missed pushes
VALID_S = 26 * 3600
REFRESH_S = 12 * 3600  # an unchanged snapshot is sent again before the previous one runs out
MAX_ITEMS = 200
SEQ_BATCH = 100  # far below the speakers' anti-replay window of 1024 sequence numbers


@dataclass
class PushState:
    """What the worker last sent each speaker (kept in memory: after a restart everything is sent once)."""

    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # speaker -> (content hash, sent at)
    resync: Handoff = field(default_factory=Handoff)  # speakers back online: send even if unchanged

    def came_online(self, speaker_id: str) -> None:
        """Send this speaker a snapshot at the next push even if nothing changed (the receipt thread calls it)."""
        self.resync.add(speaker_id)


def upcoming(session: Session, platform: Platform, now: float) -> dict[str, list[dict[str, Any]]]:
    """Each speaker's plays starting between now + SCHEDULE_MIN_LEAD_S and the horizon, as snapshot items."""
    rows = session.execute(
        select(Delivery.speaker_id, Broadcast, Clip)
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .join(Clip, Clip.id == Broadcast.clip_id)
        .where(
            Delivery.state.in_(("queued", "sent", "acknowledged")),
            Broadcast.start_at > now + platform.settings["SCHEDULE_MIN_LEAD_S"],
            Broadcast.start_at < now + HORIZON_S,
        )
        .order_by(Delivery.speaker_id, Broadcast.start_at)
    )
    settings = platform.settings
    bodies: dict[int, dict[str, Any]] = {}
    items: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for speaker_id, item, clip in rows:
        if item.id not in bodies:
            bodies[item.id] = commands.play_body(
                item,
                clip,
                secret=settings["SECRET_KEY"],
                public_url=platform.public_url,
                url_ttl_s=settings["MEDIA_URL_TTL_S"],
            )
        if len(items[speaker_id]) < MAX_ITEMS:
            items[speaker_id].append({"item_id": f"b{item.id}", "play": bodies[item.id]})
    return items


def _digest(entries: list[dict[str, Any]]) -> str:
    # Signed URLs change with every computation; the content is the broadcasts and their times.
    key = [(e["item_id"], e["play"]["start_at"], e["play"]["sha256"]) for e in entries]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def push(platform: Platform, state: PushState, *, now: float | None = None) -> int:
    """Send a fresh snapshot to every speaker whose upcoming plays changed, came back online, or is due.

    Snapshots take their sequence numbers in batches that are published as soon as they commit: a
    county-wide change must not take thousands of numbers ahead of a broadcast a web worker is publishing
    at that moment, or that broadcast would fall behind the speakers' anti-replay window.
    """
    now = time.time() if now is None else now
    resync = state.resync.take()
    with platform.db.transaction() as session:
        plan = upcoming(session, platform, now)
    speakers = set(plan) | {s for s, (digest, _) in state.sent.items() if digest != _digest([])} | resync
    due: list[tuple[str, list[dict[str, Any]], str]] = []
    for speaker_id in sorted(speakers):
        entries = plan.get(speaker_id, [])
        digest = _digest(entries)
        last = state.sent.get(speaker_id)
        fresh = last is not None and last[0] == digest and now - last[1] < REFRESH_S
        if not fresh or speaker_id in resync:
            due.append((speaker_id, entries, digest))
    keep: list[dict[str, Any]] = []  # alerts helper: media every speaker must hold (the attention tone)
    if due:
        with platform.db.transaction() as session:
            keep = alert_tone.keep_list(session, platform, now=now)
    for start in range(0, len(due), SEQ_BATCH):
        batch = due[start : start + SEQ_BATCH]
        with platform.db.transaction() as session:
            issued = [
                commands.issue(
                    session,
                    kind="schedule",
                    body={
                        "snapshot_id": uuid.uuid4().hex,
                        "generated_at": now,
                        "valid_until": now + VALID_S,
                        "items": entries,
                        **({"keep": keep} if keep else {}),  # alerts helper: the attention tone, pinned
                    },
                    targets=[f"speaker:{speaker_id}"],
                    expires_at=now + VALID_S,
                )
                for speaker_id, entries, _ in batch
            ]
        messenger = platform.messenger()
        for command in issued:
            commands.send(platform.db, messenger, command)
        for speaker_id, _, digest in batch:
            state.sent[speaker_id] = (digest, now)
    if due:
        logger.info("sent %d schedule snapshots", len(due))
    return len(due)
