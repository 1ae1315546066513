"""Signed commands: take a sequence number from the database, publish, and mark deliveries sent."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broadcast import media_urls
from broadcast.db import Database
from broadcast.models import Broadcast, Clip, Command, Delivery

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    """What sends a command row to the speakers (the broker connection of this process)."""

    def publish(self, command: Command) -> list[str]:
        """Sign and publish; return the topics used."""
        ...


def play_body(item: Broadcast, clip: Clip, *, secret: str, public_url: str, url_ttl_s: int) -> dict[str, Any]:
    """The play command's fields for a broadcast (media URL signed to outlive the command)."""
    ttl = max(url_ttl_s, int(item.expires_at - time.time()) + 3600)
    path = media_urls.signed_path(secret, clip.sha256, clip.format, ttl)
    return {
        "broadcast_id": str(item.id),
        "priority": item.priority,
        "media_url": public_url.rstrip("/") + path,
        "sha256": clip.sha256,
        "duration_ms": clip.duration_ms,
        "start_at": item.start_at,
        # the latest start: the broadcast's expiry less the time it takes to play
        "expires_at": item.expires_at - clip.duration_ms / 1000 * item.repeat,
        "volume": item.volume,
        "repeat": item.repeat,
        "title": clip.title,
    }


def issue(
    session: Session,
    *,
    kind: str,
    body: dict[str, Any],
    targets: list[str],
    expires_at: float,
    broadcast_id: int | None = None,
) -> Command:
    """Record a command; the database's autoincrement gives its rising sequence number."""
    command = Command(
        command_id=uuid.uuid4().hex,
        kind=kind,
        broadcast_id=broadcast_id,
        body={"body": body, "targets": targets},
        topics=[],
        issued_at=time.time(),
        expires_at=expires_at,
    )
    session.add(command)
    session.flush()
    return command


def send(database: Database, publisher: Publisher, command: Command) -> bool:
    """Publish a committed command, then, in a short transaction of its own, mark it and its deliveries sent.

    No transaction is held while talking to the broker, and the marking retries on deadlocks: receipts for
    this very command may be landing in the worker at the same moment.
    """
    try:
        topics = publisher.publish(command)
    except Exception as exc:  # the broker may be down: the worker retries until the command expires
        logger.warning("command %s (seq %s) not published yet: %s", command.command_id, command.seq, exc)
        database.run(
            lambda s: s.execute(update(Command).where(Command.seq == command.seq).values(attempts=Command.attempts + 1))
        )
        return False
    sent_at = time.time()

    def mark(session: Session) -> None:
        session.execute(
            update(Command)
            .where(Command.seq == command.seq)
            .values(
                topics=topics,
                published_at=sent_at,
                attempts=Command.attempts + 1,
                publisher=getattr(publisher, "client_id", None),
            )
        )
        if command.broadcast_id is not None:
            session.execute(
                update(Delivery)
                .where(Delivery.broadcast_id == command.broadcast_id, Delivery.state == "queued")
                .values(state="sent")
            )

    database.run(mark)
    return True


def supersede(session: Session, old: Command) -> Command:
    """A new command (new id, new sequence number) carrying an unpublished one's content; the old one is retired."""
    new = issue(
        session,
        kind=old.kind,
        body=old.body["body"],
        targets=old.body["targets"],
        expires_at=old.expires_at,
        broadcast_id=old.broadcast_id,
    )
    old.superseded_by = new.seq
    return new


def unpublished(session: Session, *, older_than_s: float, now: float | None = None) -> list[Command]:
    """Commands still waiting for the broker that have not expired yet."""
    now = time.time() if now is None else now
    query = select(Command).where(
        Command.published_at.is_(None),
        Command.superseded_by.is_(None),
        Command.expires_at > now,
        Command.issued_at < now - older_than_s,
    )
    return list(session.scalars(query.order_by(Command.seq).limit(500)))
