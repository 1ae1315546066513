"""The scheduler job: turn due schedule occurrences into ordinary broadcasts, exactly once, in the worker.

`run_due(platform, now)` must run in the one worker that holds the worker lease, every RUN_EVERY_S seconds
(never in a web process). Each run:

1. materializes, for every active schedule whose window runs out, its occurrences of the next LOOKAHEAD_S
   (24 h) as broadcasts with their deliveries queued: from then on they ride the speakers' schedule snapshots
   and play with the link down. Schedules are planned BATCH at a time in a few statements each
   (`services/schedule_plans.py`). One `schedule_runs` row per (schedule, occurrence time, version) is unique
   and the batch's schedule rows are locked first, so two processes running this at once (a lease hand-over)
   can never create an occurrence twice;
2. applies the misfire policy to occurrences that passed while no worker ran: routine content more than the
   schedule's grace late is recorded as missed (consecutive misses coalesce into one row), the rest plays now;
3. sends the play command of every occurrence starting within SEND_AHEAD_S, so online speakers get it
   directly too (a speaker never plays one broadcast twice, whichever copy arrives first).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import or_, select

from broadcast.models import Broadcast, Schedule, ScheduleRun
from broadcast.services.schedule_plans import Planner, plan_batch
from broadcast.services.sending import send_broadcast

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
RUN_EVERY_S = 1  # how often the worker calls run_due: a schedule saved seconds before it plays starts on time
LOOKAHEAD_S = 24 * 3600.0
REFILL_S = 3600.0  # a schedule is topped up once its window reaches less than LOOKAHEAD_S - REFILL_S ahead
SEND_AHEAD_S = 600.0
BUDGET_S = 5.0  # planning stops after this long in one run (the rest waits for the next), so sends stay prompt
BATCH = 200  # schedules planned in one transaction (a few statements each)
PLAN_THREADS = 2  # batches planned at once on PostgreSQL


def send_due(platform: Platform, now: float) -> int:
    """Send the play command of each materialized occurrence that starts within SEND_AHEAD_S."""
    with platform.db.transaction() as session:
        due = session.scalars(
            select(ScheduleRun.id)
            .join(Broadcast, Broadcast.id == ScheduleRun.broadcast_id)
            .where(ScheduleRun.state == "scheduled", Broadcast.start_at <= now + SEND_AHEAD_S)
            .order_by(Broadcast.start_at)
        ).all()
    sent = 0
    for run_id in due:
        session = platform.db.session()
        try:
            run = session.get(ScheduleRun, run_id, with_for_update=True)
            if run is None or run.state != "scheduled" or run.broadcast_id is None:
                session.rollback()
                continue
            run.state = "sent"
            item = session.get(Broadcast, run.broadcast_id)
            if item is not None:
                send_broadcast(session, platform, item)  # commits the run's new state with the command
                sent += 1
            else:
                session.commit()
        finally:
            session.close()
    return sent


class Lease(Protocol):
    """The worker lease (broadcast.lease.WorkerLease): only its holder may run the scheduler."""

    @property
    def held(self) -> bool:
        """True while this process holds the lease."""
        ...


def run_due(platform: Platform, now: float | None = None, *, lease: Lease | None = None) -> int:
    """Materialize due occurrences and send imminent ones; returns how many occurrences were recorded.

    With `lease`, nothing happens unless this process holds it (a standby worker's run is a no-op).
    """
    if lease is not None and not lease.held:
        return 0
    now = time.time() if now is None else now
    with platform.db.transaction() as session:
        ids = session.scalars(
            select(Schedule.id)
            .where(
                Schedule.state == "active",
                or_(
                    Schedule.materialized_until.is_(None),
                    Schedule.materialized_until < now + LOOKAHEAD_S - REFILL_S,
                ),
            )
            .order_by(Schedule.materialized_until, Schedule.id)  # the shortest windows (new schedules) first
        ).all()
    send_due(platform, now)  # imminent plays first: topping up a county's windows may take a while
    started = time.monotonic()
    planner = Planner()
    end = now + LOOKAHEAD_S

    def plan(chunk: list[int]) -> int | None:
        if time.monotonic() - started > BUDGET_S:
            return None  # left for the next run
        try:
            return platform.db.run(lambda s: plan_batch(s, platform, planner, chunk, now, end, REFILL_S))
        except Exception:
            logger.exception("schedules %s..%s could not be planned", chunk[0], chunk[-1])
            return 0

    chunks = [list(ids[first : first + BATCH]) for first in range(0, len(ids), BATCH)]
    # On PostgreSQL two batches are planned at once, each in its own transaction: one's Python work overlaps
    # the other's wait for the server. SQLite has one writer, so there it is one batch at a time.
    threads = PLAN_THREADS if platform.db.engine.dialect.name == "postgresql" else 1
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="plan") as pool:
        done = list(pool.map(plan, chunks))
    recorded = sum(n for n in done if n)
    left = sum(len(chunk) for chunk, n in zip(chunks, done, strict=True) if n is None)
    if left:
        logger.info("scheduler budget spent; %d schedule(s) wait for the next run", left)
    send_due(platform, now)
    if recorded:
        logger.info("scheduler recorded %d occurrence(s) of %d schedule(s)", recorded, len(ids))
    return recorded
