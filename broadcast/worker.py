"""The one active worker: receipt consumer, the outbox (publish and re-send commands), expiry and offline sweeps."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast import alert_feeds
from broadcast import scheduler as schedule_jobs
from broadcast.foreground import FOREGROUND
from broadcast.lease import WorkerLease
from broadcast.messaging import open_transport
from broadcast.models import Broadcast
from broadcast.platform import Platform
from broadcast.services import broadcasts, commands, health, receipts, schedule_push, speaker_moves
from broadcast.services.receipts import ReceiptIn
from speakers.server import ReceiptConsumer, TimeResponder
from speakers.signing import KeyPair

logger = logging.getLogger(__name__)
BATCH = 500
HEARTBEAT_S = 5  # /readyz calls a worker dead after three missed beats
ALERT_FEEDS_CHECK_S = 5  # each feed is polled at its own interval; this is how often that is checked
# Applying receipts is bookkeeping that may lag a few seconds; launching an alert may not. While a request of
# this process launches one, the receipt writer and the consumer stand aside, at most this long each time.
STAND_ASIDE_MAX_S = 15.0


def _receipt_in(receipt: Any) -> ReceiptIn:
    # Receipts carry the speaker's clock; its reported offset turns that into server time.
    offset = float(getattr(receipt, "offset_ms", None) or 0) / 1000
    detail = getattr(receipt, "detail", None) or {}
    acknowledged = detail.get("acknowledged_at")  # a held acknowledgement folded into this later receipt
    return ReceiptIn(
        speaker_id=receipt.speaker_id,
        command_id=getattr(receipt, "command_id", None),
        broadcast_id=getattr(receipt, "broadcast_id", None),
        event=receipt.event,
        at=float(getattr(receipt, "at", None) or time.time()) + offset,
        reason=getattr(receipt, "reason", None),
        acknowledged_at=float(acknowledged) + offset
        if isinstance(acknowledged, int | float) and not isinstance(acknowledged, bool)
        else None,
    )


def _state_fields(state: Any) -> dict[str, Any]:
    if isinstance(state, dict):
        return state
    if hasattr(state, "__dataclass_fields__"):
        return {name: getattr(state, name) for name in state.__dataclass_fields__}
    return dict(vars(state))


class Worker:
    """Consumes receipts and state in batches and runs the outbox and the sweeps, while it holds the lease."""

    def __init__(self, platform: Platform, lease: WorkerLease | None = None) -> None:
        self.platform = platform
        self.lease = lease or WorkerLease.for_platform(platform)
        self.started = threading.Event()
        self.lost = threading.Event()  # set when the lease was lost: the process must stop working
        self._standby: threading.Thread | None = None
        self._halt = threading.Event()  # stop waiting for (or watching) the lease
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.caught_up_at = time.time()  # the last moment no receipt or state waited in the inbox (see sweep)
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="receipt-writer", daemon=True)
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._consumer: ReceiptConsumer | None = None
        self._time: TimeResponder | None = None
        self._push_state = schedule_push.PushState()
        self._follow = speaker_moves.FollowState()  # speakers still listening to the grid they were moved from
        self._transport: Any = None
        self._time_transport: Any = None
        self._started_at = time.time()

    def start_when_leased(self) -> None:
        """Wait for the lease on a thread of its own, then start; returns at once."""
        self._standby = threading.Thread(target=self._take_over, name="worker-lease", daemon=True)
        self._standby.start()

    def _take_over(self) -> None:
        if not self.lease.acquire(self._halt):
            return
        try:
            self.start()
        except Exception:
            logger.exception("the worker could not start")
            self.lost.set()
            return
        while not self._halt.wait(self.lease.poll_s):
            if not self.lease.held:
                logger.error("worker lease lost: this worker stops working")
                self.lost.set()
                self._stop_working()
                return

    def start(self) -> None:
        """Connect to the broker, subscribe to receipts and state, start the outbox and sweeps (lease held)."""
        if not self.lease.try_acquire():
            raise RuntimeError("another worker holds the lease")
        alert_feeds.parse_feeds(str(self.platform.settings["ALERT_FEEDS"]))  # a malformed setting stops the start
        # A fixed id and a persistent session: receipts sent while the worker restarts wait at the broker.
        # Only the lease holder connects with it, so two workers never take the id from each other.
        prefix = self.platform.settings["TOPIC_PREFIX"]
        self._transport = open_transport(self.platform, f"vb-worker-{prefix}", clean_session=False)
        self._consumer = ReceiptConsumer(
            self._transport,
            prefix=prefix,
            on_receipt=lambda r: self.inbox.put(("receipt", r)),
            on_state=lambda s: self.inbox.put(("state", s)),
            before_each=lambda: FOREGROUND.wait_clear(STAND_ASIDE_MAX_S),  # parse after an alert's launch
        )
        # Messages the resumed session delivers before these handlers exist are buffered by the transport.
        self._consumer.start()
        # Time requests get a connection of their own: on the receipts' connection they would queue behind
        # a fleet's burst of receipts and states, and a late reply is a useless clock sample.
        self._time_transport = open_transport(self.platform, f"vb-time-{prefix}")
        self._time = TimeResponder(self._time_transport, KeyPair.load(self.platform.signing_key_path), prefix=prefix)
        self._time.start()
        self._writer.start()
        for job, every_s, ident in (
            (partial(outbox, self.platform, lambda: self.caught_up_at), 1, "outbox"),
            (partial(sweep, self.platform, lambda: self.caught_up_at), 5, "sweep"),
            (partial(schedule_jobs.run_due, self.platform, lease=self.lease), schedule_jobs.RUN_EVERY_S, "schedules"),
            (self._push_schedules, self.platform.settings["SCHEDULE_PUSH_S"], "schedule-push"),
            (self._reload_key, 10, "reload-key"),
            (partial(speaker_moves.follow, self.platform, self._follow), 2, "speaker-follow"),
            (self._beat, HEARTBEAT_S, "heartbeat"),
            (partial(alert_feeds.poll_due, self.platform), ALERT_FEEDS_CHECK_S, "alert-feeds"),
        ):
            # One run of a job at a time; runs missed while it was busy are coalesced into one.
            self._scheduler.add_job(
                job,
                "interval",
                seconds=every_s,
                id=ident,
                name=ident,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
            )
        self._started_at = time.time()
        self._beat()  # /readyz turns green as soon as the worker works, not one period later
        self._scheduler.start()
        self.started.set()
        logger.info("worker started on %s", self.platform.mqtt_url)

    def _beat(self) -> None:
        """Record this worker's heartbeat (read by /readyz, /metrics and the console's banner)."""
        self.platform.db.run(lambda session: health.beat(session, started_at=self._started_at))

    def _push_schedules(self) -> None:
        """Send changed schedule snapshots (and all of them to speakers that just came back online)."""
        schedule_push.push(self.platform, self._push_state)

    def _reload_key(self) -> None:
        """After `broadcast keys rotate`, sign time replies with the new key too."""
        if self._time is not None:
            key = KeyPair.load(self.platform.signing_key_path)
            if key.key_id != self._time.signer.key_id:
                self._time.signer = key
                logger.info("time replies now signed with %s", key.key_id)

    def stop(self) -> None:
        """Stop consuming, flush what arrived, disconnect (the broker keeps the session), give the lease up."""
        self._halt.set()
        if self._standby is not None and self._standby is not threading.current_thread():
            self._standby.join(timeout=10)
        self._stop_working()
        self.lease.release()
        self.platform.close()

    def _stop_working(self) -> None:
        """Stop the jobs and the consumer, apply what arrived, and disconnect (the broker keeps the session)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._time is not None:
            self._time.stop()
        # Disconnect before the consumer stops: a receipt that reached this client after the consumer stopped
        # would still be acknowledged to the broker, and lost; once disconnected the broker keeps it queued.
        for transport in (self._time_transport, self._transport):
            if transport is not None:
                transport.close()
        self._time_transport = self._transport = None
        if self._consumer is not None:
            self._consumer.stop()
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=10)

    def _write_loop(self) -> None:
        while not self._stop.is_set() or not self.inbox.empty():
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if self._drained():  # every receipt that arrived so far is applied
                    self.caught_up_at = time.time()
                continue
            FOREGROUND.wait_clear(STAND_ASIDE_MAX_S)  # an alert's launch first; its receipts wait here meanwhile
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._apply(batch)
            except Exception:
                logger.exception("could not apply %d receipts/states", len(batch))
            if self._drained():
                self.caught_up_at = time.time()

    def _drained(self) -> bool:
        """Nothing waits in the consumer (it may be standing aside, holding receipts) nor in the inbox."""
        consumer = self._consumer
        return (consumer is None or consumer.idle()) and self.inbox.empty()  # consumer first: it feeds the inbox

    def _apply(self, batch: list[tuple[str, Any]]) -> None:
        # One lock order for every batch (speakers, then deliveries by broadcast and speaker) keeps the
        # batch from deadlocking with web requests; a deadlock that still happens is retried whole.
        states = sorted((_state_fields(i) for k, i in batch if k == "state"), key=lambda f: str(f.get("speaker_id")))
        receipts_in = sorted(
            (_receipt_in(i) for k, i in batch if k == "receipt"), key=lambda r: (str(r.broadcast_id), r.speaker_id)
        )

        def work(session: Session) -> None:
            touched: set[int] = set()
            found = receipts.preload(session, receipts_in, {str(f.get("speaker_id")) for f in states})
            for fields in states:
                if receipts.apply_state(session, str(fields.get("speaker_id")), fields) == "online":
                    self._push_state.came_online(str(fields.get("speaker_id")))
                speaker_moves.note_state(session, str(fields.get("speaker_id")), fields, self._follow)
            for receipt in receipts_in:
                if receipts.apply_receipt(session, receipt, found) and str(receipt.broadcast_id).isdigit():
                    touched.add(int(str(receipt.broadcast_id)))
            session.flush()
            for broadcast_id in sorted(touched):
                item = session.get(Broadcast, broadcast_id)
                if item is not None:
                    broadcasts.refresh_status(session, item)

        self.platform.db.run(work)


def republish(platform: Platform) -> None:
    """Publish the commands a web worker could not (it died, or the broker was down), until they expire.

    A command goes out as it is (same id and sequence: speakers play an id at most once); one so old that it
    may have left the speakers' anti-replay window is superseded by a new command with the same content
    (speakers also never start a broadcast id twice).
    """
    with platform.db.transaction() as session:
        top = commands.top_seq(session)
        ready = []
        for old in commands.unpublished(session, older_than_s=2):
            ready.append(commands.supersede(session, old) if commands.too_old(old, top) else old)
    if not ready:
        return
    messenger = platform.messenger()
    for command in ready:
        commands.send(platform.db, messenger, command, first_resend_s=platform.settings["RESEND_FIRST_S"])


def resend(platform: Platform, now: float | None = None, caught_up_at: Callable[[], float] | None = None) -> int:
    """Send each command again to every targeted speaker that has not acknowledged it yet (a few queries).

    Returns the number of speakers re-sent to. Expired commands are never sent again: their deliveries
    end at expiry instead. Like the sweep, it judges only by receipts already applied: a delivery is re-sent
    only if its re-send fell due before `caught_up_at` (the last moment no receipt waited in the worker's
    inbox). While a county's receipts are still queued, their speakers are not asked again: a re-send storm
    would only bring back as many duplicate receipts and deepen the backlog it came from.
    """
    now = time.time() if now is None else now
    settings = platform.settings
    with platform.db.transaction() as session:
        due = commands.due_resends(session, now, seen_until=None if caught_up_at is None else caught_up_at())
        if not due:
            return 0
        live = commands.live_commands(session, {broadcast for _, _, broadcast, _ in due}, now)
        top = commands.top_seq(session)
        for broadcast_id, command in list(live.items()):
            if commands.too_old(command, top):  # would be out of the speakers' window: a new command instead
                new = commands.supersede(session, command)
                new.published_at, new.topics, new.attempts = now, [], 1
                live[broadcast_id] = new
        sendable = [row for row in due if row[2] in live]
        # Every due row moves on, even one with nothing to send, so it cannot crowd the next pass.
        commands.schedule_next(session, due, now, first_s=settings["RESEND_FIRST_S"], max_s=settings["RESEND_MAX_S"])
    speakers_of: dict[int, list[str]] = {}
    for _, speaker_id, broadcast_id, _ in sendable:
        speakers_of.setdefault(broadcast_id, []).append(speaker_id)
    messenger = platform.messenger()
    for broadcast_id, speaker_ids in sorted(speakers_of.items()):
        messenger.resend(live[broadcast_id], speaker_ids)
    return len(sendable)


def outbox(platform: Platform, caught_up_at: Callable[[], float] | None = None) -> None:
    """One outbox pass: publish what was never published, then re-send what was not acknowledged."""
    republish(platform)
    resend(platform, caught_up_at=caught_up_at)


def sweep(platform: Platform, caught_up_at: Callable[[], float] | None = None) -> None:
    """Mark expired deliveries missed, silent speakers offline, and roll up broadcast statuses.

    It judges only by receipts already applied: `caught_up_at` is the last moment the worker had no receipt or
    state waiting, and only deliveries that expired and speakers that fell silent before it are ended or marked
    offline. A backlog of receipts (a county's 10,000 at once) therefore never turns a delivery that played into
    a missed one, nor a speaker that spoke into an offline one; they are judged once the backlog is applied.
    """
    now = time.time()
    seen_until = now if caught_up_at is None else min(now, caught_up_at())
    with platform.db.transaction() as session:
        receipts.expire_deliveries(session, seen_until)
        receipts.mark_stale_offline(session, platform.settings["OFFLINE_AFTER_S"], now=seen_until)
        for item in session.scalars(select(Broadcast).where(Broadcast.status != "done")):
            broadcasts.refresh_status(session, item, now)
