"""The speaker agent: one speaker's connection, verification, command handling and reporting.

The same class runs a real speaker (`speaker-agent run`) and each virtual speaker of the fleet simulator;
only the output, the store and the shared caches differ.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from speakers import __version__, protocol
from speakers.agent.audio import SHARED_PCM, PcmCache
from speakers.agent.cache import MediaCache
from speakers.agent.clock import ClockSync
from speakers.agent.dedup import DuplicateCommand, SeenCommands
from speakers.agent.engine import PlaybackEngine
from speakers.agent.keep import KeptMedia
from speakers.agent.moves import RegionFollower, region_topics
from speakers.agent.outputs.base import Output
from speakers.agent.persist import restore, snapshot
from speakers.agent.policy import Planner, PlayItem
from speakers.agent.replay import ReplayWindow
from speakers.agent.reporting import Reporter
from speakers.agent.store import FileStore, Store
from speakers.agent.timers import TimerHandle, Timers
from speakers.agent.trust import KeyRing, RejectedError, Verifier
from speakers.agent.workqueue import WorkQueue
from speakers.config import AgentConfig
from speakers.messages import (
    KeyAnnouncement,
    Ping,
    Play,
    Regions,
    ScheduleSnapshot,
    State,
    Stop,
    TimeRequest,
    TimeSync,
    Volume,
)  # fmt: skip
from speakers.protocol import SignedCommand
from speakers.transport.base import BrokerAddress
from speakers.transport.lean import LeanMqttClient

logger = logging.getLogger(__name__)

DONE_KEEP_S = 86400.0  # a broadcast that started is remembered this long past its expiry


class Agent(Reporter):
    """One speaker."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        output: Output,
        store: Store | None = None,
        cache: MediaCache | None = None,
        pcm: PcmCache | None = None,
        time_sync_samples: int = 4,
        time_sync_spacing_s: float = 1.0,
        work_queue: WorkQueue | None = None,
        puback_delay_s: float = 0.0,
        timers: Timers | None = None,
    ) -> None:
        self.config = config
        self.output = output
        self.store = store if store is not None else FileStore(config.state_dir)
        if cache is None:  # a cache of its own; a shared cache's owner decides what it pins
            cache = MediaCache(
                config.cache_dir,
                config.cache_cap_bytes,
                timeout_s=config.fetch_timeout_s,
                ssl_context=config.tls_context() if config.ca_cert or config.ca_file else None,
            )
            cache.pinned = self.pinned_media
        self.cache = cache
        self.pcm = pcm or SHARED_PCM
        self.clock = ClockSync()
        self.planner = Planner(config.quiet_spans(), config.utc_offset_minutes)
        self.engine = PlaybackEngine(self)
        self.kept = KeptMedia(self)  # media every snapshot says to hold (the attention tone)
        self.keys = KeyRing.from_config(config.server_keys)
        self.window = ReplayWindow()
        self.seen = SeenCommands()  # handled command ids: their re-sends are duplicates, not replays
        self.volume = min(config.default_volume, config.max_volume)
        self.done: dict[str, float] = {}  # broadcast id -> remember until (never start it twice)
        self.outbox: dict[int, dict[str, Any]] = {}
        self.rejected_count = 0
        self.cache_repairs = 0  # cached files found corrupt and fetched again
        self.schedule_seq = 0
        self.schedule_id: str | None = None
        self.interrupted: dict[str, Any] | None = None  # the play cut off by a crash or restart
        self.provisioned_regions = list(config.regions)  # the configuration file's; a move command may override
        self.regions_seq = 0  # sequence of the last regions command applied
        self._outbox_next = 0
        self._held: list[int] = []  # outbox keys held back to leave with the next receipt
        self._reject_budget = (0.0, 0)
        self._sync_samples = time_sync_samples
        self._sync_spacing = time_sync_spacing_s
        self.timers = timers if timers is not None else Timers()  # shared by a simulated fleet
        self._own_timers = timers is None
        self._timers: dict[str, TimerHandle] = {}
        # Simulated fleets only: commands wait in a shared fair queue (state lives in memory, so nothing is
        # lost by acknowledging to the broker first); a real speaker handles each command before its PUBACK.
        self.work_queue = work_queue
        self._puback_delay_s = puback_delay_s
        restore(self, self.store.load())  # may replace self.config with the regions of a move
        self.verifier = Verifier(
            config.speaker_id, self.config.regions, self.keys, self.window, max_skew_s=config.max_clock_skew_s,
            seen=self.seen,
        )  # fmt: skip
        prefix, sid = config.topic_prefix, config.speaker_id
        self.own_topic = protocol.command_topic_for_speaker(prefix, sid)
        self.command_topics = {self.own_topic, *region_topics(prefix, self.config.regions)}
        self.moves = RegionFollower(self)
        self.time_reply_topic = protocol.time_reply_topic(prefix, sid)
        self.time_request_topic = protocol.time_request_topic(prefix, sid)
        self.state_topic = protocol.state_topic(prefix, sid)  # retained state topic of this speaker
        self.receipt_topic = protocol.receipt_topic(prefix, sid)
        self.client: LeanMqttClient | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and resume: report an interrupted play, re-plan restored plays (inside the loop)."""
        config = self.config
        address = BrokerAddress.parse(config.broker_url)
        context = config.tls_context() if address.tls else None
        will = State(config.speaker_id, online=False, at=time.time(), will=True, agent_version=__version__)
        subscriptions = [(t, 1) for t in sorted(self.command_topics)] + [(self.time_reply_topic, 0)]
        self.client = LeanMqttClient(
            address.host,
            address.port,
            client_id=config.speaker_id,
            username=config.username if config.username is not None else address.username,
            password=config.password if config.password is not None else address.password,
            will=(self.state_topic, protocol.dumps(will.to_dict()).encode(), 1, True),
            clean_session=config.clean_session,
            keepalive=config.keepalive_s,
            ssl_context=context,
            subscriptions=subscriptions,
            on_message=self.on_message,
            on_connect=self._on_connect,
            reconnect_min_s=min(1.0, config.reconnect_max_s),
            reconnect_max_s=config.reconnect_max_s,
            puback_delay_s=self._puback_delay_s,
            timers=self.timers,
        )
        self.client.start()
        if self.interrupted is not None:
            item = PlayItem.from_dict(self.interrupted["item"])
            began_at = self.interrupted.get("began_at")
            self.interrupted = None
            self.report("failed", item, reason="interrupted", detail={"began_at": began_at})
        for item in self.planner.pending.values():
            self.engine.prefetch(item)
        self.kept.fetch_all()
        self.engine.replan(persist=False)
        self.persist()
        self._every("heartbeat", config.heartbeat_s, self._heartbeat)

    async def stop(self) -> None:
        """Shut down cleanly: end a play in progress, say offline, disconnect."""
        self.engine.halt()  # a play armed to follow is saved with the queue: it starts when the agent is back
        self.engine.close()
        for timer in self._timers.values():
            timer.cancel()
        self.persist()
        if self.client is not None:
            if self.client.connected:
                self.publish_state(online=False)
                await asyncio.sleep(0.05)  # let the retained offline state leave before DISCONNECT
            self.client.stop()
            await self.client.wait_stopped()
        if self._own_timers:
            self.timers.close()

    def _every(self, name: str, period: float, action: Any) -> None:
        """Run `action` about every `period` seconds (jittered, so a fleet does not act in step)."""
        timers = self.timers

        def tick() -> None:
            self._timers[name] = timers.call_later(period * random.uniform(0.9, 1.1), tick)
            action()

        self._timers[name] = timers.call_later(period * random.uniform(0.5, 1.0), tick)

    def _heartbeat(self) -> None:
        now = self.clock.server_now()
        self.moves.subscribe_refused()
        self.done = {k: v for k, v in self.done.items() if v > now}
        self.window.prune(now)
        self.seen.prune(now)
        self.publish_state()

    # -- connection ----------------------------------------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        logger.info("%s connected (session present: %s)", self.config.speaker_id, session_present)
        self.publish_state()
        for key, data in list(self.outbox.items()):
            self._publish_receipt(key, data)
        self.time_sync_burst()
        if "time_sync" not in self._timers:
            self._every("time_sync", self.config.time_sync_interval_s, self._send_time_request)

    def on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        """Route one message from the broker (runs before the broker gets our acknowledgement)."""
        if topic == self.time_reply_topic:
            if self.work_queue is not None:
                self.work_queue.submit(self._on_time_reply, payload, time.time())
            else:
                self._on_time_reply(payload, time.time())
        elif topic in self.command_topics:
            if self.work_queue is not None:
                self.work_queue.submit(self.handle_command, topic, payload)
            else:
                self.handle_command(topic, payload)
        else:
            logger.debug("%s: ignoring message on %s", self.config.speaker_id, topic)

    # -- time ----------------------------------------------------------------------------------------

    def time_sync_burst(self) -> None:
        """Measure the clock offset a few times, at growing random intervals (1, 2, 4, ... x spacing).

        A fleet that reconnects together also asks together; the later samples fall in quieter moments,
        and the shortest round trip (the least queueing) is the one kept.
        """
        for i in range(self._sync_samples):
            low, high = (2**i - 1) * self._sync_spacing, (2 ** (i + 1) - 1) * self._sync_spacing
            self.timers.call_later(random.uniform(low, high), self._send_time_request)

    def _send_time_request(self) -> None:
        if self.client is None or not self.client.connected:
            return
        nonce, t1 = self.clock.request()
        request = TimeRequest(self.config.speaker_id, nonce, t1)
        self.client.publish(self.time_request_topic, protocol.dumps(request.to_dict()).encode(), qos=0)

    def _on_time_reply(self, payload: bytes, t4: float) -> None:
        try:
            reply = self.verifier.verify_time_reply(payload, self.clock.server_now())
        except RejectedError as rejection:
            self._rejected(self.time_reply_topic, rejection)
            return
        self.clock.on_reply(reply, t4)

    # -- commands ------------------------------------------------------------------------------------

    def handle_command(self, topic: str, payload: bytes) -> None:
        """Verify and carry out one command; every outcome is reported."""
        try:
            signed = self.verifier.verify_command(payload, self.clock.server_now())
        except DuplicateCommand as duplicate:
            # the server re-sends until it hears from us: tell it again where this command stands
            logger.info("%s: command %s again; re-sending its latest receipt", self.config.speaker_id, duplicate)
            if duplicate.receipt is not None:
                self.resend(duplicate.receipt)
            return
        except RejectedError as rejection:
            # the anti-replay window is untouched by a rejection: save only when a receipt was queued
            # (a flood of forgeries must not turn into a flood of fsyncs; the counter rides along later)
            if self._rejected(topic, rejection):
                self.persist()
            return
        command = signed.command
        if isinstance(command, Play):
            self._play(signed, command, region_wide="/cmd/region/" in topic)
        elif isinstance(command, ScheduleSnapshot):
            self._schedule(signed, command)
        elif isinstance(command, Stop):
            affected = self.engine.stop(command.broadcast_id)
            self._ack(signed, broadcast_id=command.broadcast_id, detail={"affected": affected})
        elif isinstance(command, Volume):
            self.volume = min(command.volume, self.config.max_volume)
            self._ack(signed, detail={"volume": self.volume})
            self.publish_state()
        elif isinstance(command, KeyAnnouncement):
            self.keys.rotate(command)
            self._ack(signed, detail={"key_id": command.key_id})
            logger.warning("%s: server key rotated to %s", self.config.speaker_id, command.key_id)
        elif isinstance(command, TimeSync):
            self._ack(signed)
            self.time_sync_burst()
        elif isinstance(command, Ping):
            self.report("pong", command_id=signed.id, seq=signed.seq)
            self.publish_state()
        elif isinstance(command, Regions):
            self.moves.handle(signed, command, own_topic=topic == self.own_topic)
        self.persist()

    def _ack(
        self, signed: SignedCommand, *, broadcast_id: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        self.report("acknowledged", command_id=signed.id, broadcast_id=broadcast_id, seq=signed.seq, detail=detail)

    def _play(self, signed: SignedCommand, play: Play, *, region_wide: bool) -> None:
        item = PlayItem.from_play(
            play, play_id=signed.id, command_id=signed.id, seq=signed.seq, default_expiry=signed.expires_at,
            source="command",
        )  # fmt: skip
        self.engine.take_inline(play)
        if item.broadcast_id in self.done:
            self.report("refused", item, reason="already_played")
            return
        # A whole county acknowledging in the same millisecond would be an implosion at the broker and the
        # server: region-wide commands are acknowledged after a random leisure (as CoAP does for multicast).
        # An imminent play's acknowledgement is held and leaves just before its next receipt (started,
        # missed, ...), off the critical path of starting on time.
        leisure = random.uniform(0, self.config.ack_leisure_s) if region_wide else 0.0
        start_in = self.clock.to_local(item.start_at) - time.time()
        hold = region_wide and start_in < self.config.ack_leisure_s * 2
        detail = {"priority": item.priority, "start_at": item.start_at}
        hold_for = max(0.0, start_in) + leisure  # but never held longer than this (e.g. queued behind others)
        self.report("acknowledged", item, detail=detail, send_after=-max(hold_for, 0.001) if hold else leisure)
        self.engine.accept(item)

    def _schedule(self, signed: SignedCommand, snapshot: ScheduleSnapshot) -> None:
        if signed.seq <= self.schedule_seq:
            self.report("refused", command_id=signed.id, seq=signed.seq, reason="stale_snapshot")
            return
        self.schedule_seq, self.schedule_id = signed.seq, snapshot.snapshot_id
        following = self.engine.following
        if following is not None and following.item.source == "schedule":
            self.engine.unarm()  # back in the queue, where this snapshot keeps or drops it like any other item
        wanted: dict[str, PlayItem] = {}
        for entry in snapshot.items:
            item = PlayItem.from_play(
                entry.play, play_id=f"schedule:{entry.item_id}", command_id=entry.item_id, seq=signed.seq,
                default_expiry=entry.play.expires_at or signed.expires_at, source="schedule",
            )  # fmt: skip
            if item.broadcast_id not in self.done:
                self.engine.take_inline(entry.play)
                wanted[item.play_id] = item
        for item in list(self.planner.pending.values()):
            if item.source == "schedule" and item.play_id not in wanted:
                self.planner.remove(item.play_id)  # the server dropped it from the schedule
        for play_id, item in wanted.items():
            if play_id not in self.planner.pending:
                self.planner.add(item)
            self.engine.prefetch(item)
        self.kept.replace(snapshot.keep)
        detail: dict[str, Any] = {"snapshot_id": snapshot.snapshot_id, "items": len(wanted)}
        if snapshot.keep:
            detail["keep"] = len(snapshot.keep)
        self._ack(signed, detail=detail)
        self.engine.replan(persist=False)  # handle_command persists

    def mark_done(self, broadcast_id: str, expires_at: float) -> None:
        """Remember that a broadcast has started or was cancelled: it never starts (again)."""
        self.done[broadcast_id] = expires_at + DONE_KEEP_S

    def pinned_media(self) -> set[str]:
        """Hashes the cache must keep: everything queued or playing, and the snapshot's keep list."""
        pinned = {i.sha256 for i in self.planner.pending.values()} | self.kept.hashes()
        for play in (self.engine.active, self.engine.following):
            if play is not None:
                pinned.add(play.item.sha256)
        return pinned

    def persist(self) -> None:
        """Save what must survive a restart (no-op for a memory store)."""
        if self.store.durable:
            self.store.save(snapshot(self))
