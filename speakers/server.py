"""The server side of the speaker protocol: publish signed commands, consume receipts and state, answer
time requests. Runs in the web workers (publishing) and in the one worker process (consumers)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from speakers import protocol
from speakers.errors import SpeakerError
from speakers.messages import Command, KeyAnnouncement, Receipt, State, TimeReply
from speakers.protocol import Target
from speakers.schema import SchemaError, validate
from speakers.signing import KeyPair
from speakers.transport.base import Message, Transport

logger = logging.getLogger(__name__)

ParentOf = Mapping[str, str | None] | Callable[[str], str | None]


def _ancestors(code: str, parent_of: ParentOf) -> Iterable[str]:
    lookup = parent_of.get if isinstance(parent_of, Mapping) else parent_of
    seen: set[str] = set()
    parent = lookup(code)
    while parent and parent not in seen:
        seen.add(parent)
        yield parent
        parent = lookup(parent)


def minimal_targets(
    targets: Iterable[Target | str],
    *,
    parent_of: ParentOf | None = None,
    speaker_region: Mapping[str, str] | None = None,
) -> list[Target]:
    """Drop duplicates, regions inside another target region, and speakers inside a target region.

    `parent_of` maps a region code to its parent's code; `speaker_region` maps a speaker id to its grid.
    Without them only exact duplicates are dropped.
    """
    parsed = sorted({Target.parse(t) for t in targets})
    regions = {t.id for t in parsed if t.kind == "region"}
    kept: list[Target] = []
    for target in parsed:
        if target.kind == "region":
            if parent_of is not None and any(a in regions for a in _ancestors(target.id, parent_of)):
                continue
        elif speaker_region is not None and target.id in speaker_region:
            grid = speaker_region[target.id]
            chain = [grid, *(_ancestors(grid, parent_of) if parent_of is not None else ())]
            if any(code in regions for code in chain):
                continue
        kept.append(target)
    return kept


def key_announcement(new_key: KeyPair, *, retire_previous_at: float | None = None) -> KeyAnnouncement:
    """The command that introduces `new_key`; publish it signed with the current key."""
    return KeyAnnouncement(
        public_key=new_key.public_b64(), key_id=new_key.key_id, retire_previous_at=retire_previous_at
    )


class CommandPublisher:
    """Signs commands and publishes them, QoS 1, once per distinct target topic."""

    def __init__(self, transport: Transport, signer: KeyPair, *, prefix: str) -> None:
        self.transport = transport
        self.signer = signer  # replace after a key rotation has been announced
        self.prefix = prefix

    def publish(
        self,
        command: Command,
        *,
        seq: int,
        command_id: str,
        targets: list[Target | str],
        issued_at: float,
        expires_at: float,
        parent_of: ParentOf | None = None,
        speaker_region: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Sign `command` once and publish it to the minimal topic set; return the topics.

        Raises:
            SpeakerError: bad targets (kind "invalid") or the broker did not take it ("unavailable").
        """
        chosen = minimal_targets(targets, parent_of=parent_of, speaker_region=speaker_region)
        if not chosen:
            raise SpeakerError("speakers.no_targets", "没有指定播发目标。", "No targets given.")
        if expires_at <= issued_at:
            raise SpeakerError(
                "speakers.bad_expiry", "指令的过期时间必须晚于签发时间。", "expires_at must be after issued_at."
            )
        payload = protocol.encode_command(
            command,
            signer=self.signer,
            seq=seq,
            command_id=command_id,
            targets=chosen,
            issued_at=issued_at,
            expires_at=expires_at,
        )
        topics = [t.topic(self.prefix) for t in chosen]
        for topic in topics:
            self.transport.publish(topic, payload, qos=1)
        # A snapshot round is one command per speaker: log those at debug, the caller sums them up.
        level = logging.DEBUG if command.TYPE == "schedule" else logging.INFO
        logger.log(level, "published %s %s seq=%d to %d topic(s)", command.TYPE, command_id, seq, len(topics))
        return topics


def _speaker_from_topic(topic: str, kind: str) -> str | None:
    parts = topic.split("/")
    return parts[-1] if len(parts) >= 3 and parts[-2] == kind else None


class ReceiptConsumer:
    """Receives every speaker's receipts and state and hands them to callbacks on one dispatch thread.

    A message whose speaker_id differs from the topic's is dropped: the topic is what the broker's ACL
    authenticated. The network thread only queues what arrives; parsing, checking and the callbacks run in
    order on a dedicated thread, so neither slow database work nor a county's burst of receipts stalls the
    broker connection. `before_each` runs on that thread before each message (it may wait).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        prefix: str,
        on_receipt: Callable[[Receipt], None],
        on_state: Callable[[State], None],
        before_each: Callable[[], object] | None = None,
    ) -> None:
        self.transport = transport
        self.prefix = prefix
        self.on_receipt = on_receipt
        self.on_state = on_state
        self.before_each = before_each
        self._queue: queue.Queue[tuple[str, Message] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # malformed or misattributed messages

    def start(self) -> None:
        """Subscribe and start dispatching."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._dispatch, name="receipt-consumer", daemon=True)
        self._thread.start()
        self.transport.subscribe(protocol.receipt_topic(self.prefix), self._on_receipt, qos=1)
        self.transport.subscribe(protocol.state_topic(self.prefix), self._on_state, qos=1)

    def stop(self, *, keep_session: bool = True) -> None:
        """Deliver what is already queued and stop the dispatch thread.

        On a persistent session the subscriptions are kept (unless `keep_session` is false), so the broker
        queues receipts while the worker restarts; a clean session unsubscribes.
        """
        if self._thread is None:
            return
        persistent = bool(getattr(self.transport, "persistent", False))
        topics = (
            ()
            if keep_session and persistent
            else (protocol.receipt_topic(self.prefix), protocol.state_topic(self.prefix))
        )
        for topic in topics:
            try:
                self.transport.unsubscribe(topic)
            except Exception:  # the broker may already be gone; we are stopping anyway
                logger.debug("unsubscribe %s failed", topic, exc_info=True)
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _parse(self, message: Message, kind: str, schema: str) -> dict[str, Any] | None:
        if not message.payload:
            return None  # a cleared retained state
        try:
            data = json.loads(message.payload)
            validate(data, schema)
        except (ValueError, SchemaError) as exc:
            self.dropped += 1
            logger.warning("dropped malformed %s on %s: %s", kind, message.topic, exc)
            return None
        if data["speaker_id"] != _speaker_from_topic(message.topic, kind):
            self.dropped += 1
            logger.warning("dropped %s on %s claiming speaker %s", kind, message.topic, data["speaker_id"])
            return None
        return data

    def idle(self) -> bool:
        """True when no message waits here or is being handed on (read before the callbacks' own queue)."""
        return self._queue.unfinished_tasks == 0

    def _on_receipt(self, message: Message) -> None:
        self._queue.put(("receipt", message))

    def _on_state(self, message: Message) -> None:
        self._queue.put(("state", message))

    def _dispatch(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                self._handle(*entry)
            finally:
                self._queue.task_done()  # handed on (or dropped): `idle` may say so now

    def _handle(self, kind: str, message: Message) -> None:
        if self.before_each is not None:
            self.before_each()
        data = self._parse(message, kind, kind)
        if data is None:
            return
        try:
            if kind == "receipt":
                self.on_receipt(Receipt.from_dict(data))
            else:
                self.on_state(State.from_dict(data))
        except Exception:
            logger.exception("callback failed for %s on %s", kind, message.topic)


class TimeResponder:
    """Answers speakers' time requests with signed replies (NTP-style t1/t2/t3); run it in the worker."""

    def __init__(
        self,
        transport: Transport,
        signer: KeyPair,
        *,
        prefix: str,
        max_per_minute: int = 30,
    ) -> None:
        self.transport = transport
        self.signer = signer
        self.prefix = prefix
        self.max_per_minute = max_per_minute  # per speaker: a flood costs the server signatures
        self._counts: dict[str, tuple[float, int]] = {}
        self.answered = 0

    def start(self) -> None:
        """Subscribe to every speaker's time requests."""
        self.transport.subscribe(protocol.time_request_topic(self.prefix), self._on_request, qos=0)

    def stop(self) -> None:
        """Stop answering."""
        try:
            self.transport.unsubscribe(protocol.time_request_topic(self.prefix))
        except Exception:
            logger.debug("unsubscribe failed", exc_info=True)

    def _allowed(self, speaker_id: str, now: float) -> bool:
        window, count = self._counts.get(speaker_id, (now, 0))
        if now - window >= 60:
            window, count = now, 0
        self._counts[speaker_id] = (window, count + 1)
        return count < self.max_per_minute

    def _on_request(self, message: Message) -> None:
        t2 = time.time()
        try:
            data = json.loads(message.payload)
            validate(data, "time_request")
        except (ValueError, SchemaError):
            logger.debug("ignored malformed time request on %s", message.topic)
            return
        speaker_id = data["speaker_id"]
        if message.topic != protocol.time_request_topic(self.prefix, speaker_id):
            return
        if not self._allowed(speaker_id, t2):
            return
        reply = TimeReply(speaker_id, data["nonce"], data["t1"], t2, time.time())
        payload = protocol.encode_time_reply(reply, self.signer)
        self.transport.publish(protocol.time_reply_topic(self.prefix, speaker_id), payload, qos=0)
        self.answered += 1
