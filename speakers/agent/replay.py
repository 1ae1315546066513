"""Sliding anti-replay window over the server's command sequence (as in IPsec ESP and DTLS).

A sequence above the highest seen moves the window up; one inside the window is accepted once; one below
it is refused. Two commands published a moment apart by two web workers may therefore arrive in either
order and both be accepted, while any replay, or anything older than the window, is refused. Command ids
are also remembered until their expiry, so the same id is never accepted twice.
"""

from __future__ import annotations

from typing import Any

WINDOW = 1024  # sequence numbers; far more than commands that can be in flight at once


class ReplayWindow:
    """The anti-replay state of one speaker (persisted with the agent's state)."""

    __slots__ = ("bitmap", "ids", "top", "width")

    def __init__(self, width: int = WINDOW) -> None:
        self.width = width
        self.top = 0  # highest sequence accepted so far
        self.bitmap = 0  # bit i set = sequence (top - i) accepted
        self.ids: dict[str, float] = {}  # accepted command id -> its expiry (server clock)

    def check(self, command_id: str, seq: int) -> str | None:
        """Return None when (id, seq) is fresh, else the rejection reason."""
        if command_id in self.ids:
            return "replayed"
        if seq > self.top:
            return None
        offset = self.top - seq
        if offset >= self.width:
            return "out_of_window"
        if self.bitmap >> offset & 1:
            return "replayed"
        return None

    def accept(self, command_id: str, seq: int, expires_at: float) -> None:
        """Record an accepted command (call only after `check` returned None)."""
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.width) - 1) if shift < self.width else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
        self.ids[command_id] = expires_at

    def prune(self, now: float) -> None:
        """Forget ids whose command has expired: an expired command is refused anyway."""
        if len(self.ids) > 64:
            self.ids = {k: v for k, v in self.ids.items() if v >= now}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"width": self.width, "top": self.top, "bitmap": format(self.bitmap, "x"), "ids": self.ids}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayWindow:
        """Restore persisted state."""
        window = cls(int(data.get("width", WINDOW)))
        window.top = int(data.get("top", 0))
        window.bitmap = int(data.get("bitmap", "0"), 16)
        window.ids = {str(k): float(v) for k, v in data.get("ids", {}).items()}
        return window
