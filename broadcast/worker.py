"""The one worker process: receipt consumer, command republisher, expiry and offline sweeps."""

from __future__ import annotations

import logging
import queue
import threading
import time
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.messaging import open_transport
from broadcast.models import Broadcast
from broadcast.platform import Platform
from broadcast.services import broadcasts, commands, receipts, schedule_push
from broadcast.services.receipts import ReceiptIn
from speakers.server import ReceiptConsumer, TimeResponder
from speakers.signing import KeyPair

logger = logging.getLogger(__name__)
BATCH = 500


def _receipt_in(receipt: Any) -> ReceiptIn:
    return ReceiptIn(
        speaker_id=receipt.speaker_id,
        command_id=getattr(receipt, "command_id", None),
        broadcast_id=getattr(receipt, "broadcast_id", None),
        event=receipt.event,
        # Receipts carry the speaker's clock; its reported offset turns that into server time.
        at=float(getattr(receipt, "at", None) or time.time()) + float(getattr(receipt, "offset_ms", None) or 0) / 1000,
        reason=getattr(receipt, "reason", None),
    )


def _state_fields(state: Any) -> dict[str, Any]:
    if isinstance(state, dict):
        return state
    if hasattr(state, "__dataclass_fields__"):
        return {name: getattr(state, name) for name in state.__dataclass_fields__}
    return dict(vars(state))


class Worker:
    """Consumes receipts and state in batches and runs the periodic sweeps; one per deployment."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="receipt-writer", daemon=True)
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._consumer: ReceiptConsumer | None = None
        self._time: TimeResponder | None = None
        self._push_state = schedule_push.PushState()
        self._transport: Any = None
        self._time_transport: Any = None

    def start(self) -> None:
        """Connect to the broker, subscribe to receipts and state, start the sweeps."""
        # A fixed id and a persistent session: receipts sent while the worker restarts wait at the broker.
        prefix = self.platform.settings["TOPIC_PREFIX"]
        self._transport = open_transport(self.platform, f"vb-worker-{prefix}", clean_session=False)
        self._consumer = ReceiptConsumer(
            self._transport,
            prefix=prefix,
            on_receipt=lambda r: self.inbox.put(("receipt", r)),
            on_state=lambda s: self.inbox.put(("state", s)),
        )
        self._consumer.start()
        # Time requests get a connection of their own: on the receipts' connection they would queue behind
        # a fleet's burst of receipts and states, and a late reply is a useless clock sample.
        self._time_transport = open_transport(self.platform, f"vb-time-{prefix}")
        self._time = TimeResponder(self._time_transport, KeyPair.load(self.platform.signing_key_path), prefix=prefix)
        self._time.start()
        self._writer.start()
        for job, every_s, ident in (
            (partial(republish, self.platform), 2, "republish"),
            (partial(sweep, self.platform), 5, "sweep"),
            (self._push_schedules, self.platform.settings["SCHEDULE_PUSH_S"], "schedule-push"),
            (self._reload_key, 10, "reload-key"),
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
        self._scheduler.start()
        logger.info("worker started on %s", self.platform.mqtt_url)

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
        """Stop consuming, flush what arrived, and disconnect."""
        self._scheduler.shutdown(wait=True)
        if self._time is not None:
            self._time.stop()
        if self._consumer is not None:
            self._consumer.stop()
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=10)
        for transport in (self._time_transport, self._transport):
            if transport is not None:
                transport.close()
        self.platform.close()

    def _write_loop(self) -> None:
        while not self._stop.is_set() or not self.inbox.empty():
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
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
                    self._push_state.resync.add(str(fields.get("speaker_id")))
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
    """Send again, as new commands, those a web worker could not publish (broker down), until they expire.

    A retry gets a new id and sequence number: if the first copy did reach a speaker after all, the second is
    an already-played broadcast, not a replay that would raise a security alarm.
    """
    with platform.db.transaction() as session:
        retries = [commands.supersede(session, old) for old in commands.unpublished(session, older_than_s=2)]
    if not retries:
        return
    messenger = platform.messenger()
    for command in retries:
        commands.send(platform.db, messenger, command)


def sweep(platform: Platform) -> None:
    """Mark expired deliveries missed, silent speakers offline, and roll up broadcast statuses."""
    now = time.time()
    with platform.db.transaction() as session:
        receipts.expire_deliveries(session, now)
        receipts.mark_stale_offline(session, platform.settings["OFFLINE_AFTER_S"])
        for item in session.scalars(select(Broadcast).where(Broadcast.status != "done")):
            broadcasts.refresh_status(session, item, now)
