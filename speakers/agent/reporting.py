"""Receipts, the outbox and retained state of an agent (a part of `Agent`, kept apart for size)."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from speakers import __version__, protocol
from speakers.messages import Receipt, State

if TYPE_CHECKING:
    from speakers.agent.core import Agent
    from speakers.agent.policy import PlayItem
    from speakers.agent.trust import RejectedError

logger = logging.getLogger(__name__)

OUTBOX_MAX = 2000  # unsent receipts kept while offline (oldest dropped beyond)


class Reporter:
    """Sends receipts (at least once: kept in the outbox until the broker has them) and state."""

    def _rejected(self: Agent, topic: str, rejection: RejectedError) -> bool:
        """Count and report a rejected message; return whether a receipt was queued (rate-limited)."""
        self.rejected_count += 1
        logger.warning("%s: rejected a message on %s: %s", self.config.speaker_id, topic, rejection.reason)
        now = time.monotonic()
        start, sent = self._reject_budget
        if now - start >= 60:
            start, sent = now, 0
        self._reject_budget = (start, sent + 1)
        send = sent < self.config.rejected_reports_per_minute
        detail = {"topic": topic, **{k: v for k, v in rejection.details.items() if isinstance(v, str | int | float)}}
        receipt = self.report(
            "rejected", command_id=rejection.command_id, broadcast_id=rejection.broadcast_id,
            reason=rejection.reason, detail=detail, send=send,
        )  # fmt: skip
        if rejection.remembered and rejection.command_id:
            self.seen.note_receipt(rejection.command_id, receipt)  # its re-sends get this answer again
        return send

    def report(
        self: Agent,
        event: str,
        item: PlayItem | None = None,
        *,
        command_id: str | None = None,
        broadcast_id: str | None = None,
        seq: int | None = None,
        at: float | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
        send: bool = True,
        send_after: float = 0.0,
    ) -> dict[str, Any]:
        """Send a receipt (kept in the outbox until the broker has it) and note it in the timeline.

        `send_after` > 0 delays sending by that many seconds; < 0 holds it until the next receipt is sent,
        but at most -send_after seconds. Returns the receipt (the latest word on its command, re-sent when
        the same command arrives again).
        """
        sha256 = None
        if item is not None:
            command_id, broadcast_id, seq, sha256 = item.command_id, item.broadcast_id, item.seq, item.sha256
            detail = {"source": item.source, **(detail or {})} if item.source != "command" else detail
        receipt = Receipt(
            self.config.speaker_id, command_id, broadcast_id, event, time.time() if at is None else at,
            reason, detail or {}, seq, round(self.clock.offset * 1000, 3),
        )  # fmt: skip
        if self.output.records:
            self.output.record(
                {
                    "event": event, "broadcast_id": broadcast_id, "command_id": command_id, "sha256": sha256,
                    "at": receipt.at, "reason": reason, "speaker_id": self.config.speaker_id, **(detail or {}),
                }
            )  # fmt: skip
        data = receipt.to_dict()
        if command_id is not None and event != "rejected" and (item is None or item.source == "command"):
            self.seen.note_receipt(command_id, data)
        if send:
            if send_after >= 0 and self._held:
                self._fold_held(data)
            self._outbox_next += 1
            key = self._outbox_next
            self.outbox[key] = data
            while len(self.outbox) > OUTBOX_MAX:
                self.outbox.pop(next(iter(self.outbox)))
            if send_after < 0:
                self._held.append(key)
                self.timers.call_later(-send_after, self._release, key)
            elif send_after > 0:
                self.timers.call_later(send_after, self._publish_receipt, key, self.outbox[key])
            elif self.work_queue is not None:
                self.work_queue.submit(self._publish_receipt, key, self.outbox[key], later=True)  # after commands
            else:
                self._publish_receipt(key, self.outbox[key])
        return data

    def resend(self: Agent, receipt: dict[str, Any]) -> None:
        """Send an earlier receipt again (the server asked again: a duplicate command)."""
        self._outbox_next += 1
        key = self._outbox_next
        self.outbox[key] = receipt
        while len(self.outbox) > OUTBOX_MAX:
            self.outbox.pop(next(iter(self.outbox)))
        self._publish_receipt(key, receipt)

    def _fold_held(self: Agent, data: dict[str, Any]) -> None:
        """Fold the held acknowledgements of `data`'s command into it now, not when it is published.

        In a fleet's shared queue `data` may wait behind commands; the hold of its acknowledgement may end
        meanwhile, and the acknowledgement must not leave on its own when `started` is already decided.
        """
        for older in [k for k in self._held if k in self.outbox and _folds_into(self.outbox[k], data)]:
            self._held.remove(older)
            data["detail"]["acknowledged_at"] = self.outbox.pop(older)["at"]

    def _release(self: Agent, key: int) -> None:
        """The hold of a held receipt is over. In a fleet it leaves after the reports already queued.

        A `started` queued behind received commands (engine._begun) folds this acknowledgement in when it
        runs; released at once, the acknowledgement would leave on its own, one publish per speaker.
        """
        if self.work_queue is not None:
            self.work_queue.submit(self._release_now, key, later=True)
        else:
            self._release_now(key)

    def _release_now(self: Agent, key: int) -> None:
        if key in self._held:
            self._held.remove(key)
            if key in self.outbox:
                self._publish_receipt(key, self.outbox[key])

    def _publish_receipt(self: Agent, key: int, data: dict[str, Any]) -> None:
        if self.client is None:
            return
        if self._held:  # held receipts leave first (those that fold into a later one did so in `report`)
            held, self._held = self._held, []
            for older in held:
                if older in self.outbox and older != key:
                    self._publish_receipt(older, self.outbox[older])
        self.client.publish(
            self.receipt_topic, protocol.dumps(data).encode(), qos=1, on_ack=lambda: self.outbox.pop(key, None)
        )

    def state(self: Agent, *, online: bool = True) -> State:
        """This speaker's health now."""
        active = self.engine.active
        return State(
            speaker_id=self.config.speaker_id,
            online=online,
            at=time.time(),
            agent_version=__version__,
            playing=active.item.broadcast_id if active else None,
            playing_priority=active.item.priority if active else None,
            queue_length=sum(1 for i in self.planner.pending.values() if i.source == "command"),
            schedule_items=sum(1 for i in self.planner.pending.values() if i.source == "schedule"),
            clock_offset_ms=round(self.clock.offset * 1000, 3) if self.clock.synced else None,
            clock_rtt_ms=round(self.clock.rtt * 1000, 3) if self.clock.rtt is not None else None,
            cache_bytes=self.cache.size_bytes,
            cache_cap_bytes=self.cache.cap_bytes,
            rejected_count=self.rejected_count,
            cache_repairs=self.cache_repairs,
            volume=self.volume,
            output=self.output.name,
            last_error=(self.client.last_error or "")[:500] or None if self.client else None,
            grid=self.config.regions[0] if self.config.regions else None,
        )

    def publish_state(self: Agent, *, online: bool = True) -> None:
        """Publish the retained state (when connected)."""
        if self.client is not None and self.client.connected:
            payload = json.dumps(self.state(online=online).to_dict(), separators=(",", ":")).encode()
            self.client.publish(self.state_topic, payload, qos=1, retain=True)


def _folds_into(held: dict[str, Any], later: dict[str, Any]) -> bool:
    """True when a held `acknowledged` can ride in `later`, the next receipt about the same command.

    A county's speakers start an alert's tone together: folding each one's held acknowledgement into its
    `started` halves the receipts that reach the broker and the server in that second.
    """
    return (
        held["event"] == "acknowledged"
        and later["event"] not in ("acknowledged", "rejected")
        and held["command_id"] is not None
        and held["command_id"] == later["command_id"]
        and held["broadcast_id"] == later["broadcast_id"]
    )
