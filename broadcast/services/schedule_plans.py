"""Planning many schedule occurrences at once: the scheduler's bulk path (a county's 10,000 schedules in seconds).

`plan_batch` locks a batch of schedules, expands each one's occurrences up to its window's end, checks each
occurrence as `broadcasts.create` does (the owner's role, the clip, quiet hours, the targets) and writes the
broadcasts, their deliveries, their audit events and the `schedule_runs` rows in a few statements. A `Planner`
resolves each (owner, targets) and (owner, clip) pair once per scheduler run, not once per occurrence, from
one load of the regions and speakers (`schedule_targets.TargetIndex`). An
occurrence the quick checks do not pass goes through `broadcasts.create` itself, so a refusal carries exactly
the error a person pressing "send" would get. Exactly-once: the batch's schedule rows are locked first (a second
scheduler waits, then finds them topped up), occurrences already recorded are skipped, and the unique run row
refuses anything that slips past both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from broadcast.errors import BroadcastError
from broadcast.models import AuditEvent, Broadcast, Clip, Delivery, Playlist, Schedule, ScheduleRun, User
from broadcast.services import audit_chain, broadcasts, bulk, clips
from broadcast.services.regions import Resolution
from broadcast.services.schedule_targets import TargetIndex
from broadcast.services.schedules import recurrence_of
from schedules import can_end, item_for, misfire_decision, next_occurrences

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ClipFacts:
    sha256: str
    duration_s: float


@dataclass
class Planner:
    """What one scheduler run learns once and reuses: target resolutions and clip checks per owner."""

    resolutions: dict[tuple[int, tuple[str, ...]], Resolution | None] = field(default_factory=dict)
    clip_facts: dict[tuple[int, int], _ClipFacts | None] = field(default_factory=dict)
    index: TargetIndex | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resolution(self, session: Session, owner: User, targets: list[str]) -> Resolution | None:
        """The owner's resolution of these targets (None: refused, the slow path words why)."""
        key = (owner.id, tuple(targets))
        if key not in self.resolutions:
            with self.lock:  # batches may be planned on two threads; the index is loaded once
                if self.index is None:
                    self.index = TargetIndex(session)
            self.resolutions[key] = self.index.resolve(list(targets), owner)
        return self.resolutions[key]

    def clip(self, session: Session, owner: User, clip_id: int) -> _ClipFacts | None:
        """The hash and length of a clip the owner may use (None: refused)."""
        key = (owner.id, clip_id)
        if key not in self.clip_facts:
            try:
                found: Clip = clips.get(session, clip_id, owner)
                self.clip_facts[key] = _ClipFacts(found.sha256, found.duration_ms / 1000)
            except BroadcastError:
                self.clip_facts[key] = None
        return self.clip_facts[key]


@dataclass
class _Batch:
    """Rows gathered for one batch, written in a few statements at the end."""

    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    reached: list[list[str]] = field(default_factory=list)
    runs_made: list[dict[str, Any]] = field(default_factory=list)  # one per broadcast above, same order
    runs: list[dict[str, Any]] = field(default_factory=list)  # refused and slow-path runs
    audit: list[dict[str, Any]] = field(default_factory=list)


def _lock(session: Session, ids: list[int]) -> list[Schedule]:
    # A write first takes the lock at once on SQLite too (FOR UPDATE does it on PostgreSQL): a second
    # scheduler waits here, then sees how far this one got; the unique run rows back this up.
    session.execute(update(Schedule).where(Schedule.id.in_(ids)).values(materialized_until=Schedule.materialized_until))
    query = (
        select(Schedule)
        .where(Schedule.id.in_(ids))
        .order_by(Schedule.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def _last_runs(session: Session, schedule_ids: list[int]) -> dict[int, ScheduleRun]:
    if not schedule_ids:
        return {}
    newest = (
        select(ScheduleRun.schedule_id, func.max(ScheduleRun.occurrence_at).label("at"))
        .where(ScheduleRun.schedule_id.in_(schedule_ids))
        .group_by(ScheduleRun.schedule_id)
        .subquery()
    )
    query = select(ScheduleRun).join(
        newest, (ScheduleRun.schedule_id == newest.c.schedule_id) & (ScheduleRun.occurrence_at == newest.c.at)
    )
    return {run.schedule_id: run for run in session.scalars(query)}


def _misses(session: Session, pending: dict[int, tuple[Schedule, list[list[tuple[int, float]]]]]) -> int:
    """One row per run of consecutive misses; a run continuing the schedule's last missed row extends it."""
    last = _last_runs(session, [sid for sid, (_, spans) in pending.items() if spans])
    rows: list[dict[str, Any]] = []
    for sid, (item, spans) in pending.items():
        for n, span in enumerate(spans):
            prior = last.get(sid) if n == 0 else None
            if prior is not None and prior.state == "missed" and prior.version == item.version:
                prior.missed_count += len(span)
                prior.last_missed_at = span[-1][1]
                continue
            index, first = span[0]
            rows.append(
                {
                    "schedule_id": sid,
                    "occurrence_at": first,
                    "occurrence_index": index,
                    "version": item.version,
                    "state": "missed",
                    "missed_count": len(span),
                    "last_missed_at": span[-1][1],
                    "reason": "missed:late",
                }
            )
            logger.info("schedule %s: %d occurrence(s) missed from %s", sid, len(span), first)
    if rows:
        bulk.insert_rows(session, ScheduleRun, rows)
    return len(rows)


def _slow(session: Session, platform: Platform, item: Schedule, owner: User, run: dict[str, Any], now: float) -> None:
    """One occurrence through broadcasts.create: it either plans the broadcast or says why not."""
    at = run["occurrence_at"]
    try:
        with session.begin_nested():
            made = broadcasts.create(
                session,
                owner,
                platform.rules,
                clip_id=run["clip_id"],
                targets=list(item.targets),
                priority=item.priority,
                volume=item.volume,
                start_at=at if at >= now else None,
                source="schedule",
                now=now,
            )
            run |= {"state": "scheduled", "broadcast_id": made.id}
    except BroadcastError as exc:
        run |= {"state": "refused", "reason": f"{exc.code}: {exc.en}"[:200]}
        logger.warning("schedule %s occurrence at %s refused: %s", item.id, at, exc.en)


def _occurrence(
    session: Session,
    platform: Platform,
    planner: Planner,
    batch: _Batch,
    item: Schedule,
    owner: User,
    run: dict[str, Any],
    now: float,
) -> None:
    """Plan one occurrence quickly when every check passes, else through broadcasts.create."""
    rules = platform.rules
    at = run["occurrence_at"]
    start = max(at if at >= now else 0.0, now + rules.start_lead_s)
    # The checks of broadcasts.create that can fail here; a schedule's approval (先审后播) was given to the
    # schedule itself (approvals.hold_schedule), so its occurrences are not held a second time.
    quick = owner.role not in ("viewer", "warning_source")
    quick = quick and not (item.priority == "emergency" and owner.role == "village_head")
    quick = quick and (item.priority == "emergency" or not rules.quiet_hours.contains(start, rules.timezone))
    facts = planner.clip(session, owner, run["clip_id"]) if quick else None
    resolution = planner.resolution(session, owner, list(item.targets)) if facts else None
    if facts is None or resolution is None:
        _slow(session, platform, item, owner, run, now)
        batch.runs.append(run)
        return
    batch.broadcasts.append(
        {
            "clip_id": run["clip_id"],
            "priority": item.priority,
            "volume": rules.default_volume if item.volume is None else item.volume,
            "repeat": 1,
            "targets": resolution.targets,
            "wire_targets": resolution.wire_targets,
            "start_at": start,
            "expires_at": start + rules.ttl_s + facts.duration_s,
            "status": "sending",
            "source": "schedule",
            "created_by": owner.id,
        }
    )
    batch.reached.append(resolution.reached)
    batch.runs_made.append(run | {"state": "scheduled"})
    batch.audit.append(
        {
            "actor": owner.username,
            "regions": resolution.targets,
            "clip_id": run["clip_id"],
            "sha256": facts.sha256,
            "priority": item.priority,
            "speakers": len(resolution.reached),
            "start_at": start,
        }
    )


def _clip_for(item: Schedule, playlists: dict[int, Playlist], index: int) -> int | None:
    if item.clip_id is not None:
        return item.clip_id
    playlist = playlists.get(item.playlist_id) if item.playlist_id else None
    if playlist is None:
        return None
    pick = item_for(index, len(playlist.clip_ids), playlist.mode)
    return None if pick is None else int(playlist.clip_ids[pick])


def _new_ids(session: Session, n: int) -> list[int]:
    """Ids for n new broadcasts, known before the insert, so it is one statement on every database.

    (An INSERT ... RETURNING of many rows in order is one statement per row on SQLite.) PostgreSQL hands out
    the sequence's next values; on SQLite this transaction holds the database's write lock (taken by
    `_lock`), so nobody else can insert until it commits and the ids after the largest one are free.
    """
    if session.get_bind().dialect.name == "postgresql":
        query = text("SELECT nextval(pg_get_serial_sequence('broadcasts', 'id')) FROM generate_series(1, :n)")
        return sorted(session.scalars(query, {"n": n}))
    top = session.scalar(select(func.max(Broadcast.id))) or 0
    return list(range(top + 1, top + n + 1))


def _write(session: Session, batch: _Batch) -> int:
    """The batch's broadcasts, deliveries, audit events and runs, in a few statements."""
    entries: list[dict[str, Any]] = []
    if batch.broadcasts:
        ids = _new_ids(session, len(batch.broadcasts))
        rows = [{"id": i} | row for i, row in zip(ids, batch.broadcasts, strict=True)]
        bulk.insert_rows(session, Broadcast, rows)
        stamp = datetime.now(UTC)  # given, not defaulted: a default is called once per row
        deliveries = [
            {"broadcast_id": bid, "speaker_id": sid, "state": "queued", "resends": 0, "updated_at": stamp}
            for bid, reached in zip(ids, batch.reached, strict=True)
            for sid in reached
        ]
        bulk.insert_rows(session, Delivery, deliveries)
        for bid, facts, run in zip(ids, batch.audit, batch.runs_made, strict=True):
            run["broadcast_id"] = bid
            detail = {k: v for k, v in facts.items() if k not in ("actor", "regions")}
            entries.append(
                {
                    "actor": facts["actor"],
                    "action": "broadcast.create",
                    "object_type": "broadcast",
                    "object_id": str(bid),
                    "region_codes": facts["regions"],
                    "address": None,
                    "detail": detail | {"source": "schedule"},
                    "at": stamp,
                }
            )
    keys = ("schedule_id", "occurrence_at", "occurrence_index", "version", "clip_id", "state", "broadcast_id", "reason")
    rows = [{k: run.get(k) for k in keys} for run in batch.runs_made + batch.runs]
    if rows:
        bulk.insert_rows(session, ScheduleRun, rows)
    if entries:
        # Last: sealing takes the audit chain's lock, held until commit, which other writers wait for.
        audit_chain.seal_rows(session, entries)  # the same entries audit.record writes, sealed in one go
        bulk.insert_rows(session, AuditEvent, entries)
    session.flush()
    return len(rows)


def plan_batch(
    session: Session, platform: Platform, planner: Planner, ids: list[int], now: float, end: float, refill_s: float
) -> int:
    """Turn the occurrences up to `end` of the schedules `ids` into runs; returns how many runs were recorded."""
    items = [s for s in _lock(session, ids) if s.state == "active"]
    owner_ids = {s.created_by for s in items if s.created_by}
    owners = {u.id: u for u in session.scalars(select(User).where(User.id.in_(owner_ids)))} if owner_ids else {}
    wanted = {s.playlist_id for s in items if s.playlist_id}
    playlists = {p.id: p for p in session.scalars(select(Playlist).where(Playlist.id.in_(wanted)))} if wanted else {}
    starts = [s.materialized_until or 0.0 for s in items]
    taken = set(
        session.execute(
            select(ScheduleRun.schedule_id, ScheduleRun.occurrence_at, ScheduleRun.version).where(
                ScheduleRun.schedule_id.in_([s.id for s in items]), ScheduleRun.occurrence_at >= min(starts, default=0)
            )
        ).tuples()
    )
    batch = _Batch()
    pending: dict[int, tuple[Schedule, list[list[tuple[int, float]]]]] = {}
    for item in items:
        start = item.materialized_until if item.materialized_until is not None else item.created_at.timestamp()
        if start >= end - refill_s:
            continue  # another process topped it up a moment ago
        owner = owners.get(item.created_by) if item.created_by else None
        rec = recurrence_of(item)
        spans: list[list[tuple[int, float]]] = [[]]
        for index, when in rec.indexed(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)):
            at = when.timestamp()
            if (item.id, at, item.version) in taken:
                continue  # recorded already (the unique run row would refuse it)
            if at < now and misfire_decision(at, now, item.grace_s, priority=item.priority) == "missed":
                spans[-1].append((index, at))
                continue
            if spans[-1]:
                spans.append([])
            if owner is None or not owner.active:
                item.state = "paused"
                logger.warning("schedule %s paused: its owner can no longer broadcast", item.id)
                break
            clip_id = _clip_for(item, playlists, index)
            if clip_id is None:
                item.state = "ended"  # an `advance` playlist has played every item
                break
            run = {
                "schedule_id": item.id,
                "occurrence_at": at,
                "occurrence_index": index,
                "version": item.version,
                "clip_id": clip_id,
            }
            _occurrence(session, platform, planner, batch, item, owner, run, now)
        pending[item.id] = (item, [span for span in spans if span])
        # Written below in one UPDATE for the batch: through the ORM it is one statement per schedule.
        set_committed_value(item, "materialized_until", end)
        if item.state == "active" and can_end(rec) and not next_occurrences(rec, datetime.fromtimestamp(end, UTC), 1):
            item.state = "ended"
    if pending:
        topped_up = update(Schedule).where(Schedule.id.in_(list(pending))).values(materialized_until=end)
        session.execute(topped_up.execution_options(synchronize_session=False))
    return _misses(session, pending) + _write(session, batch)
