"""Signed commands: take a sequence number from the database, publish, and mark deliveries sent."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from broadcast import media_urls
from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.models import Broadcast, Clip, Command, Delivery
from speakers.agent.replay import WINDOW
from speakers.protocol import check_command
from speakers.schema import SchemaError, validate

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200  # play.json's maxLength: a longer title would make every speaker reject the command
INLINE_PRIORITIES = ("emergency", "urgent")
# An unpublished command older than this many sequence numbers could fall outside a speaker's anti-replay
# window (speakers/agent/replay.py) by the time it arrives: it is superseded instead of published as it is.
SAFE_SEQ_AGE = WINDOW // 2


class Publisher(Protocol):
    """What sends a command row to the speakers (the broker connection of this process)."""

    def publish(self, command: Command) -> list[str]:
        """Sign and publish; return the topics used."""
        ...


def short_title(title: str | None) -> str | None:
    """A clip title cut to what the protocol allows, with an ellipsis when it was cut."""
    if title is None or len(title) <= TITLE_MAX_CHARS:
        return title
    return title[: TITLE_MAX_CHARS - 1] + "…"


def play_body(
    item: Broadcast,
    clip: Clip,
    *,
    secret: str,
    public_url: str,
    url_ttl_s: int,
    media_file: Path | None = None,
    inline_max_bytes: int = 0,
) -> dict[str, Any]:
    """The play command's fields for a broadcast (media URL signed to outlive the command).

    An emergency or urgent clip no larger than `inline_max_bytes` also rides inside the command
    (`media_b64`), so its first sound never waits on a busy web tier.
    """
    ttl = max(url_ttl_s, int(item.expires_at - time.time()) + 3600)
    path = media_urls.signed_path(secret, clip.sha256, clip.format, ttl)
    body: dict[str, Any] = {
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
        "title": short_title(clip.title),
    }
    if media_file is not None and item.priority in INLINE_PRIORITIES and inline_max_bytes > 0:
        try:
            size = media_file.stat().st_size
            if size <= inline_max_bytes:
                body["media_b64"] = base64.b64encode(media_file.read_bytes()).decode("ascii")
        except OSError as exc:  # the speakers fetch it by URL instead
            logger.warning("clip %s not inlined: %s", clip.sha256[:12], exc)
    return body


def check(kind: str, body: dict[str, Any], targets: list[str], *, issued_at: float, expires_at: float) -> None:
    """Check a command against the protocol's schemas, as every speaker will; raise BroadcastError if it fails."""
    document = {
        "v": 1,
        "type": kind,
        "id": "check",
        "seq": 1,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "targets": targets,
        "cmd": body,
    }
    try:
        validate(document, "command")
        check_command(kind, body)
    except SchemaError as exc:
        raise BroadcastError(
            "invalid_command",
            f"指令不符合终端协议，未发送（{exc.path}：{exc.problem}）。",
            f"The command does not match the speaker protocol and was not sent ({exc.path}: {exc.problem}).",
            kind="bad_request",
            path=exc.path,
        ) from exc


def issue(
    session: Session,
    *,
    kind: str,
    body: dict[str, Any],
    targets: list[str],
    expires_at: float,
    broadcast_id: int | None = None,
    issued_at: float | None = None,
) -> Command:
    """Check a command against the protocol's schemas and record it; the autoincrement gives its sequence number.

    `issued_at` is the moment the sender fixed the command's start from (default: now).

    Raises:
        BroadcastError: the command would be rejected by every speaker (nothing is stored).
    """
    issued_at = time.time() if issued_at is None else issued_at
    check(kind, body, targets, issued_at=issued_at, expires_at=expires_at)
    command = Command(
        command_id=uuid.uuid4().hex,
        kind=kind,
        broadcast_id=broadcast_id,
        body={"body": body, "targets": targets},
        topics=[],
        issued_at=issued_at,
        expires_at=expires_at,
    )
    session.add(command)
    session.flush()
    return command


def send(database: Database, publisher: Publisher, command: Command, *, first_resend_s: float = 3.0) -> bool:
    """Publish a committed command, then, in a short transaction of its own, mark it and its deliveries sent.

    No transaction is held while talking to the broker, and the marking retries on deadlocks: receipts for
    this very command may be landing in the worker at the same moment. Each delivery sent is due for a
    re-send to its speaker after `first_resend_s` unless that speaker acknowledges first.
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
                .values(state="sent", next_resend_at=sent_at + first_resend_s)
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


def top_seq(session: Session) -> int:
    """The highest sequence number issued so far."""
    return int(session.scalar(select(func.max(Command.seq))) or 0)


def too_old(command: Command, top: int) -> bool:
    """True when a command's sequence may have left a speaker's anti-replay window: send a new one instead."""
    return top - command.seq >= SAFE_SEQ_AGE


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


# -- the outbox: re-send to each speaker that has not acknowledged, until it does or the command expires --

Due = tuple[int, str, int, int]  # delivery id, speaker id, broadcast id, re-sends so far


# Sent: not acknowledged yet. Acknowledged or playing: its next receipt is overdue (receipts.QUERY_AFTER_S), and
# the speaker answers the known command id with its latest receipt.
RESENDING = ("sent", "acknowledged", "playing")


def due_resends(session: Session, now: float, limit: int = 5000, *, seen_until: float | None = None) -> list[Due]:
    """Deliveries of unexpired broadcasts whose re-send (or receipt query) fell due by `seen_until` (one query)."""
    due_by = now if seen_until is None else min(now, seen_until)
    query = (
        select(Delivery.id, Delivery.speaker_id, Delivery.broadcast_id, Delivery.resends)
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .where(Delivery.state.in_(RESENDING), Delivery.next_resend_at <= due_by, Broadcast.expires_at > now)
        .order_by(Delivery.next_resend_at)
        .limit(limit)
    )
    return [(int(a), str(b), int(c), int(d)) for a, b, c, d in session.execute(query).tuples()]


def live_commands(session: Session, broadcast_ids: set[int], now: float) -> dict[int, Command]:
    """The current, published, unexpired play command of each broadcast (one query)."""
    if not broadcast_ids:
        return {}
    query = select(Command).where(
        Command.broadcast_id.in_(sorted(broadcast_ids)),
        Command.kind == "play",
        Command.published_at.is_not(None),
        Command.superseded_by.is_(None),
        Command.expires_at > now,
    )
    return {c.broadcast_id: c for c in session.scalars(query.order_by(Command.seq)) if c.broadcast_id is not None}


def backoff(resends: int, first_s: float, max_s: float) -> float:
    """Seconds until the next re-send after `resends` of them: first_s, doubling, capped at max_s."""
    return min(first_s * 2 ** min(resends, 16), max_s)


def schedule_next(session: Session, due: list[Due], now: float, *, first_s: float, max_s: float) -> None:
    """Count one more re-send on each delivery and set when the next is due (one UPDATE per back-off step)."""
    by_count: dict[int, list[int]] = {}
    for delivery_id, _speaker, _broadcast, resends in due:
        by_count.setdefault(resends, []).append(delivery_id)
    for resends, ids in sorted(by_count.items()):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.state.in_(RESENDING))
            .values(resends=resends + 1, next_resend_at=now + backoff(resends + 1, first_s, max_s))
            .execution_options(synchronize_session=False)
        )
