"""The audit trail's tamper-evident chain: every entry carries a keyed hash over itself and the previous entry.

Entries are sealed as they are flushed: the writer locks the chain's head row, numbers its new entries after the
head and hashes each with HMAC-SHA256 under a key derived from the instance's secret key (which lives in the
instance folder, not in the database), so someone who can edit the database but not read that key can neither
change, delete nor insert an entry without `broadcast audit verify` naming the first broken one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from broadcast.models import AuditChainHead, AuditEvent

KEY_INFO = "audit_key"  # where a session carries the chain key (Session.info)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GENESIS = "0" * 64
ORDER = "_audit_order"  # a transient attribute: the order entries were recorded in this process
ENTRY_FIELDS = ("chain_seq", "at", "actor", "action", "object_type", "object_id", "region_codes", "address", "detail")


def derive_key(secret_key: str) -> bytes:
    """The chain key, derived from the instance's secret key so the two are never the same bytes."""
    return hmac.new(secret_key.encode(), b"village-broadcast audit chain v1", hashlib.sha256).digest()


def _micros(at: datetime) -> int:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1)


def entry_digest(key: bytes, prev_hash: str, entry: AuditEvent | SimpleNamespace) -> str:
    """HMAC-SHA256 over the previous hash and every field of the entry, in a canonical JSON form."""
    fields: dict[str, Any] = {
        "seq": entry.chain_seq,
        "at": _micros(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "regions": entry.region_codes,
        "address": entry.address,
        "detail": entry.detail,
    }
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hmac.new(key, f"{prev_hash}\n{text}".encode(), hashlib.sha256).hexdigest()


@event.listens_for(Session, "before_flush")
def _seal(session: Session, _context: object, _instances: object) -> None:
    """Number and hash the audit entries this flush inserts, holding the chain head's lock until commit."""
    new = [obj for obj in session.new if isinstance(obj, AuditEvent) and obj.chain_seq is None]
    if not new:
        return
    key = session.info.get(KEY_INFO, b"")
    # Writing the head first takes its row lock (PostgreSQL) or the database's write lock (SQLite), so two
    # writers can never number entries from the same head.
    session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=AuditChainHead.seq))
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).execution_options(populate_existing=True)
    ).scalar_one()
    for entry in sorted(new, key=lambda e: getattr(e, ORDER, 0)):
        if entry.at is None:
            entry.at = datetime.now(UTC)
        entry.chain_seq = head.seq + 1
        entry.prev_hash = head.last_hash
        entry.entry_hash = entry_digest(key, head.last_hash, entry)
        head.seq, head.last_hash = entry.chain_seq, entry.entry_hash


def seal_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Number and hash audit rows about to be bulk-inserted (keys as AuditEvent's columns), moving the head.

    The session is flushed first, so entries it holds are sealed before these; the head's lock is then held
    until the transaction commits, as `_seal` holds it.
    """
    if not rows:
        return
    session.flush()
    key = session.info.get(KEY_INFO, b"")
    session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=AuditChainHead.seq))
    seq, last = session.execute(
        select(AuditChainHead.seq, AuditChainHead.last_hash).where(AuditChainHead.id == 1)
    ).one()
    for row in rows:
        seq += 1
        row.setdefault("at", datetime.now(UTC))
        row |= {"chain_seq": seq, "prev_hash": last}
        view = SimpleNamespace(**{name: row.get(name) for name in ENTRY_FIELDS})
        last = row["entry_hash"] = entry_digest(key, last, view)
    session.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=seq, last_hash=last))


@dataclass(frozen=True)
class Verdict:
    """The outcome of walking the chain: whole or not, how many entries, and the first broken one."""

    ok: bool
    entries: int
    legacy: int = 0
    broken_id: int | None = None
    problem: str = ""


def verify(session: Session, key: bytes) -> Verdict:
    """Walk the whole trail in order and name the first entry that was edited, deleted or inserted behind it."""
    prev, expected_seq, chained, legacy, seen_chain = GENESIS, 1, 0, 0, False
    for entry in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
        if entry.chain_seq is None:
            if seen_chain:
                return Verdict(False, chained, legacy, entry.id, "entry without a chain link after the chain began")
            legacy += 1
            continue
        seen_chain = True
        if entry.chain_seq != expected_seq:
            problem = f"chain position {entry.chain_seq}, expected {expected_seq}: an entry before it was removed"
            return Verdict(False, chained, legacy, entry.id, problem)
        if entry.prev_hash != prev:
            return Verdict(False, chained, legacy, entry.id, "does not follow the entry before it")
        if entry.entry_hash != entry_digest(key, prev, entry):
            return Verdict(False, chained, legacy, entry.id, "its content was changed after it was written")
        prev, expected_seq, chained = entry.entry_hash, expected_seq + 1, chained + 1
    head = session.get(AuditChainHead, 1)
    if head is not None and (head.seq, head.last_hash) != (chained, prev):
        return Verdict(False, chained, legacy, None, f"the chain ends at {chained} but its head says {head.seq}")
    return Verdict(True, chained, legacy)
