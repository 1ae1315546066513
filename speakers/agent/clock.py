"""Clock offset to the server, estimated NTP-style over the broker.

offset = ((t2 - t1) + (t3 - t4)) / 2, round trip = (t4 - t1) - (t3 - t2). Of the recent samples the one
with the shortest round trip wins: queueing delay is what makes samples wrong, and the fastest exchange
had the least of it. Until the first reply the device's own clock is trusted (offset 0).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from speakers.messages import TimeReply

SAMPLE_MAX_AGE_S = 3600.0  # clocks drift; older samples no longer describe the offset
MAX_SAMPLES = 8
MAX_PENDING = 8


@dataclass(frozen=True)
class ClockSample:
    """One measured exchange."""

    offset_s: float
    rtt_s: float
    at: float  # local clock when measured


class ClockSync:
    """Offset of the server clock relative to this device's clock."""

    __slots__ = ("_best", "_pending", "max_rtt_s", "samples")

    def __init__(self, max_rtt_s: float = 0.5) -> None:
        self.max_rtt_s = max_rtt_s  # a slower exchange says too little about the offset: ignore it
        self.samples: list[ClockSample] = []
        self._pending: dict[str, float] = {}  # nonce -> t1
        self._best: ClockSample | None = None

    def request(self, now: float | None = None) -> tuple[str, float]:
        """Start an exchange: return (nonce, t1) to send."""
        t1 = time.time() if now is None else now
        nonce = os.urandom(8).hex()
        if len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        self._pending[nonce] = t1
        return nonce, t1

    def on_reply(self, reply: TimeReply, t4: float | None = None) -> ClockSample | None:
        """Take a verified reply; None when it answers no request of ours (stale or duplicated)."""
        t4 = time.time() if t4 is None else t4
        t1 = self._pending.pop(reply.nonce, None)
        if t1 is None or t1 != reply.t1:
            return None
        rtt = (t4 - t1) - (reply.t3 - reply.t2)
        if rtt < 0 or rtt > self.max_rtt_s:
            return None
        sample = ClockSample(((reply.t2 - t1) + (reply.t3 - t4)) / 2, rtt, t4)
        self.samples = [s for s in self.samples if t4 - s.at < SAMPLE_MAX_AGE_S][-(MAX_SAMPLES - 1) :]
        self.samples.append(sample)
        self._best = min(self.samples, key=lambda s: s.rtt_s)
        return sample

    @property
    def synced(self) -> bool:
        """True once at least one exchange succeeded."""
        return self._best is not None

    @property
    def offset(self) -> float:
        """Seconds to add to the local clock to get the server clock."""
        return self._best.offset_s if self._best else 0.0

    @property
    def rtt(self) -> float | None:
        """Round trip of the sample in use."""
        return self._best.rtt_s if self._best else None

    def server_now(self) -> float:
        """The server clock now, as estimated."""
        return time.time() + self.offset

    def to_local(self, server_time: float) -> float:
        """Convert a server-clock instant to this device's clock."""
        return server_time - self.offset
