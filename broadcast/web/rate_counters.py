"""Fixed-window rate-limit counters in this process's memory: the `limits` storage `process://`.

limits' own `memory://` storage expires keys from a `threading.Timer` that it starts again whenever the last
one has ended: under load that is a new thread for about every request (15-25 % of a cheap API read). This
storage expires a window when it is next touched and sweeps the idle ones at most once every SWEEP_S, in the
calling thread. Like `memory://` it is per process: RATE_LIMIT_STORAGE (e.g. Redis) shares counters.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

from limits.storage import Storage

SWEEP_S = 10.0


class ProcessCounters(Storage):
    """Counters for the fixed-window strategy (the one broadcast.web.rate_limits uses), without a timer thread."""

    STORAGE_SCHEME: ClassVar[list[str]] = ["process"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, when its window ends)
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        """Nothing here talks to a server: no storage error to wrap."""
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Count `amount` hits in the key's current window (a new window of `expiry` s when the last ended)."""
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_S
                self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
            count, ends = self._windows.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + expiry
            count += amount
            self._windows[key] = (count, ends)
        return count

    def get(self, key: str) -> int:
        """Hits counted in the key's current window (0 when it has ended)."""
        count, ends = self._windows.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now, when it has none)."""
        now = time.time()
        _count, ends = self._windows.get(key, (0, 0.0))
        return ends if ends > now else now

    def check(self) -> bool:
        """Always healthy: it lives in this process."""
        return True

    def reset(self) -> int | None:
        """Forget every counter; returns how many there were."""
        with self._lock:
            count = len(self._windows)
            self._windows = {}
        return count

    def clear(self, key: str) -> None:
        """Forget one key's counter."""
        with self._lock:
            self._windows.pop(key, None)
