"""The commands a speaker has already handled, so a re-sent command is a duplicate, not a replay.

The server re-sends the identical signed envelope (same id, same sequence, same body) until the speaker
acknowledges it or it expires. A speaker that recognises the id *and* the exact signed body answers with
its latest receipt for that command and does nothing else: it never plays it twice and raises no alarm.
The same id with a different body is still a replay (the anti-replay window refuses it). Entries are kept
until the command's expiry plus a grace period, independent of the sequence window.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

GRACE_S = 600.0  # a late QoS 1 redelivery just after expiry is still recognised
MAX_ENTRIES = 4096  # commands alive at once on one speaker are far fewer
UNKNOWN_EXPIRY_S = 3600.0  # how long a signed but unreadable command's id is kept


def body_digest(body: bytes) -> str:
    """A short fingerprint of a signed body (same id + same digest = the identical command)."""
    return hashlib.blake2b(body, digest_size=12).hexdigest()


class DuplicateCommand(Exception):  # noqa: N818  (a signal to the agent, never leaves the agent)
    """A command this speaker already handled arrived again; `receipt` is its latest receipt (or None)."""

    def __init__(self, command_id: str, receipt: dict[str, Any] | None) -> None:
        super().__init__(command_id)
        self.command_id = command_id
        self.receipt = receipt


class SeenCommands:
    """Command id -> [keep until (server clock), body digest, latest receipt]; persisted with the state."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, list[Any]] = {}

    def lookup(self, command_id: str, digest: str) -> list[Any] | None:
        """The entry when this exact command (id and body) was handled before."""
        entry = self.entries.get(command_id)
        return entry if entry is not None and entry[1] == digest else None

    def remember(self, command_id: str, digest: str, expires_at: float | None, now: float) -> bool:
        """Record a handled command (accepted, or rejected after its signature checked); False if known."""
        if command_id in self.entries:
            return False
        keep = (expires_at if expires_at is not None else now + UNKNOWN_EXPIRY_S) + GRACE_S
        self.entries[command_id] = [keep, digest, None]
        if len(self.entries) > MAX_ENTRIES:
            self.prune(now)
            while len(self.entries) > MAX_ENTRIES:
                self.entries.pop(next(iter(self.entries)))
        return True

    def note_receipt(self, command_id: str, receipt: dict[str, Any]) -> None:
        """Keep `receipt` as the latest word on a handled command (re-sent when the command comes again)."""
        entry = self.entries.get(command_id)
        if entry is not None:
            entry[2] = receipt

    def prune(self, now: float) -> None:
        """Forget commands past their expiry and grace."""
        self.entries = {k: v for k, v in self.entries.items() if v[0] >= now}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return self.entries

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeenCommands:
        """Restore persisted state (malformed entries are skipped)."""
        seen = cls()
        for key, value in (data or {}).items():
            if isinstance(value, list) and len(value) == 3 and isinstance(value[1], str):
                seen.entries[str(key)] = [float(value[0]), value[1], value[2] if isinstance(value[2], dict) else None]
        return seen
