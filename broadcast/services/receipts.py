"""Receipts and speaker state in, delivery states and fleet health out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broadcast.models import STATE_ORDER, TERMINAL_STATES, Broadcast, Clip, Command, Delivery, Speaker, utcnow
from broadcast.services import audit

logger = logging.getLogger(__name__)

# Receipt event -> delivery state it moves to.
EVENT_STATE = {
    "acknowledged": "acknowledged",
    "started": "playing",
    "finished": "finished",
    "preempted": "preempted",
    "failed": "failed",
    "missed": "missed",
    "rejected": "rejected",
    "refused": "failed",  # a rule on the device said no (quiet hours); the reason says which
    "stopped": "failed",  # cancelled by a stop command
}


# A rejection that only says "you sent this before": the speaker has the command, the delivery goes on.
DUPLICATE_REASONS = frozenset({"replayed", "duplicate"})
# A delivery still `playing` this long after its broadcast expired will never report its end.
PLAYING_GRACE_S = 120.0
# An acknowledged or playing delivery whose next receipt is this late after the play should have ended is
# asked again (the outbox re-sends the command; the speaker answers a known id with its latest receipt):
# receipts can be lost when the broker dies, or when speakers reconnect before the worker has subscribed again.
QUERY_AFTER_S = 10.0
REPEAT_GAP_S = 2.0  # the speakers' default gap between repeats (play commands name none)


@dataclass(frozen=True)
class ReceiptIn:
    """A receipt as the server needs it (decoupled from the wire dataclass)."""

    speaker_id: str
    command_id: str | None
    broadcast_id: str | None
    event: str
    at: float
    reason: str | None = None
    acknowledged_at: float | None = None  # server clock: an acknowledgement the speaker folded into this receipt


def _advances(current: str, new: str) -> bool:
    """Deliveries only move forward; a terminal state never changes again."""
    if current in TERMINAL_STATES:
        return False
    if new in TERMINAL_STATES:
        return True
    return STATE_ORDER.get(new, -1) > STATE_ORDER.get(current, -1)


DeliveryKey = tuple[int, str]


# session.info keys of what `preload` keeps for its batch
PRELOADED_SPEAKERS = "receipts.preloaded_speakers"
SCHEDULE_COMMANDS = "receipts.schedule_commands"  # command id -> is a schedule snapshot
PLAY_WINDOWS = "receipts.play_windows"  # broadcast id -> (start_at, seconds its play lasts)


def preload(session: Session, receipts: list[ReceiptIn], speaker_ids: set[str]) -> dict[DeliveryKey, Delivery]:
    """Load a batch's speakers and deliveries in a few queries instead of one per message.

    The session's identity map holds objects weakly, so the speakers are kept in `session.info` for the batch:
    otherwise each `session.get` of `apply_state` would query again, flushing the previous speaker first (at a
    county's 10,000 speakers coming online, that was a flush, an audit-chain seal and a query per state).
    Which acknowledged commands are schedule snapshots, and how long each broadcast's play lasts (for the next
    query of an acknowledged or playing delivery), are looked up once for the batch as well: a `session.get`
    of the broadcast and its clip per receipt queried both again each time, flushing the previous delivery.
    """
    acks = [r for r in receipts if _schedule_ack_candidate(r)]
    if acks:
        ids = sorted({str(r.command_id) for r in acks})
        query = select(Command.command_id).where(Command.kind == "schedule", Command.command_id.in_(ids))
        schedules = set(session.scalars(query))
        session.info.setdefault(SCHEDULE_COMMANDS, {}).update((c, c in schedules) for c in ids)
        speaker_ids = speaker_ids | {r.speaker_id for r in acks if r.command_id in schedules}
    if speaker_ids:
        query = select(Speaker).where(Speaker.id.in_(sorted(speaker_ids)))
        session.info.setdefault(PRELOADED_SPEAKERS, []).extend(session.scalars(query))
    wanted: dict[int, set[str]] = {}
    for receipt in receipts:
        if receipt.event in EVENT_STATE and receipt.broadcast_id and str(receipt.broadcast_id).isdigit():
            wanted.setdefault(int(str(receipt.broadcast_id)), set()).add(receipt.speaker_id)
    if wanted:
        session.info.setdefault(PLAY_WINDOWS, {}).update(_play_windows(session, sorted(wanted)))
    found: dict[DeliveryKey, Delivery] = {}
    for broadcast_id, ids in sorted(wanted.items()):
        query = select(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id.in_(sorted(ids)))
        found.update(((d.broadcast_id, d.speaker_id), d) for d in session.scalars(query))
    return found


def _schedule_ack_candidate(receipt: ReceiptIn) -> bool:
    """An acknowledgement of a command that belongs to no broadcast (a schedule snapshot, among others)."""
    return receipt.event == "acknowledged" and not receipt.broadcast_id and bool(receipt.command_id)


def apply_receipt(session: Session, receipt: ReceiptIn, deliveries: dict[DeliveryKey, Delivery]) -> bool:
    """Apply one receipt of a batch `preload` read; True when it changed. Security rejections are audited."""
    if receipt.event == "rejected":
        session.execute(
            update(Speaker).where(Speaker.id == receipt.speaker_id).values(rejected_count=Speaker.rejected_count + 1)
        )
        audit.record(
            session,
            f"speaker:{receipt.speaker_id}",
            "speaker.rejected_command",
            object_type="command",
            object_id=receipt.command_id,
            reason=receipt.reason,
            broadcast_id=receipt.broadcast_id,
        )
    if _schedule_ack_candidate(receipt):
        if session.info[SCHEDULE_COMMANDS][str(receipt.command_id)]:  # read by `preload` for its batch
            speaker = session.get(Speaker, receipt.speaker_id)
            if speaker is not None:
                speaker.schedule_synced_at = datetime.fromtimestamp(receipt.at, UTC)
        return False
    if receipt.event == "refused" and receipt.reason == "already_played":
        return False  # a second copy of a broadcast this speaker already played: nothing to record
    state = EVENT_STATE.get(receipt.event)
    if state is None or not receipt.broadcast_id or not str(receipt.broadcast_id).isdigit():
        return False
    delivery = deliveries.get((int(receipt.broadcast_id), receipt.speaker_id))
    if delivery is None:
        logger.info("receipt for unknown delivery %s/%s", receipt.broadcast_id, receipt.speaker_id)
        return False
    if state == "rejected" and (delivery.state not in ("queued", "sent") or receipt.reason in DUPLICATE_REASONS):
        return False  # a copy of a command already accepted (a re-send): the first answer stands
    if not _advances(delivery.state, state):
        return False
    delivery.state = state
    if receipt.reason or receipt.event in ("refused", "stopped"):
        reason = receipt.reason or receipt.event
        delivery.reason = (f"{receipt.event}:{reason}" if receipt.event in ("refused", "stopped") else reason)[:200]
    if state == "acknowledged":
        delivery.acknowledged_at = receipt.at
    elif receipt.acknowledged_at is not None and delivery.acknowledged_at is None:
        delivery.acknowledged_at = receipt.acknowledged_at
    if state == "playing":
        delivery.started_at = receipt.at
    if state in ("acknowledged", "playing"):
        delivery.next_resend_at = _query_at(session, delivery, state, receipt.at)
    elif state in TERMINAL_STATES and state != "rejected":
        delivery.finished_at = receipt.at
    return True


def _play_windows(session: Session, broadcast_ids: list[int]) -> dict[int, tuple[float, float]]:
    """Broadcast id -> (its start, how long its play lasts with its repeats), for these broadcasts."""
    query = (
        select(Broadcast.id, Broadcast.start_at, Broadcast.repeat, Clip.duration_ms)
        .join(Clip, Clip.id == Broadcast.clip_id)
        .where(Broadcast.id.in_(broadcast_ids))
    )
    return {
        int(row.id): (row.start_at, row.duration_ms / 1000 * row.repeat + REPEAT_GAP_S * (row.repeat - 1))
        for row in session.execute(query)
    }


def _query_at(session: Session, delivery: Delivery, state: str, at: float) -> float | None:
    """When to ask an acknowledged or playing speaker again: a while after its play should have ended."""
    window = session.info[PLAY_WINDOWS].get(delivery.broadcast_id)  # read by `preload` with the delivery
    if window is None:
        return None
    start_at, play_s = window
    begin = max(start_at, at) if state == "acknowledged" else at
    return begin + play_s + QUERY_AFTER_S


def apply_state(session: Session, speaker_id: str, fields: dict[str, Any]) -> str | None:
    """Record a speaker's heartbeat/state; returns "online" or "offline" when that flag changed."""
    speaker = session.get(Speaker, speaker_id)
    if speaker is None:
        return None
    at = fields.get("at")
    seen = datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else utcnow()
    online = bool(fields.get("online", True))
    changed = None
    if speaker.online != online:
        changed = "online" if online else "offline"
        audit.record(session, f"speaker:{speaker_id}", f"speaker.{changed}")
    speaker.online = online
    if online:
        speaker.last_seen = seen
    for column, key in (
        ("agent_version", "agent_version"),
        ("playing_broadcast_id", "playing"),
        ("clock_offset_ms", "clock_offset_ms"),
        ("cache_bytes", "cache_bytes"),
        ("cache_cap_bytes", "cache_cap_bytes"),
    ):
        if key in fields:
            setattr(speaker, column, fields[key])
    speaker.state = {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool | type(None))}
    return changed


def mark_stale_offline(session: Session, offline_after_s: int, *, now: float | None = None) -> int:
    """Speakers silent for too long (before `now`) are offline even if the broker never sent their last will."""
    moment = utcnow() if now is None else datetime.fromtimestamp(now, UTC)
    limit = moment - timedelta(seconds=offline_after_s)
    result = session.execute(
        update(Speaker).where(Speaker.online.is_(True), Speaker.last_seen < limit).values(online=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def expire_deliveries(session: Session, now: float) -> int:
    """End every delivery of an expired broadcast that has not ended, with the reason; nothing waits for ever.

    Never acknowledged (offline through the whole window, despite the re-sends): `missed`,
    `offline_through_window`. Acknowledged but never started: `missed`, `no_receipt_after_ack`. Still
    playing long after the expiry: `failed`, `no_final_receipt`.
    """
    expired = select(Broadcast.id).where(Broadcast.expires_at < now, Broadcast.status != "done")
    long_expired = select(Broadcast.id).where(Broadcast.expires_at < now - PLAYING_GRACE_S, Broadcast.status != "done")
    changed = 0
    for states, source, state, reason in (
        (("queued", "sent"), expired, "missed", "offline_through_window"),
        (("acknowledged",), expired, "missed", "no_receipt_after_ack"),
        (("playing",), long_expired, "failed", "no_final_receipt"),
    ):
        result = session.execute(
            update(Delivery)
            .where(Delivery.broadcast_id.in_(source), Delivery.state.in_(states))
            .values(state=state, reason=reason, next_resend_at=None)
            .execution_options(synchronize_session=False)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed
