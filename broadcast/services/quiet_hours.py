"""Quiet hours (静默时段): local hours when only emergencies may play."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from broadcast.errors import BroadcastError

SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    """A daily span of local time, possibly over midnight; empty means none."""

    start: time | None = None
    end: time | None = None

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Parse "22:00-06:00" (empty text: no quiet hours)."""
        if not text or not text.strip():
            return cls()
        match = SPAN.match(text)
        if not match:
            raise BroadcastError("invalid_quiet_hours", f"静默时段格式无效：{text}", f"Invalid quiet hours: {text}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise BroadcastError("invalid_quiet_hours", f"静默时段格式无效：{text}", f"Invalid quiet hours: {text}")
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, when: float, timezone: ZoneInfo) -> bool:
        """True when the unix time falls inside the span, in local time."""
        if self.start is None or self.end is None or self.start == self.end:
            return False
        local = datetime.fromtimestamp(when, timezone).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        """As written in settings."""
        if self.start is None or self.end is None:
            return ""
        return f"{self.start:%H:%M}-{self.end:%H:%M}"
