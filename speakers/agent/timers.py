"""One timer heap for many agents.

asyncio keeps its timers in a heap ordered by a comparison written in Python; with ten thousand simulated
speakers holding several timers each, every timer set or fired costs a dozen of those comparisons. This
heap orders plain tuples (compared in C) and keeps a single asyncio timer armed for its earliest entry.
A real speaker has one of these of its own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class TimerHandle:
    """A scheduled call that can be cancelled."""

    __slots__ = ("args", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any] | None, args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args

    def cancel(self) -> None:
        """Do not run it (it is dropped from the heap when its time comes)."""
        self.fn = None
        self.args = ()

    def cancelled(self) -> bool:
        """True once cancelled or run."""
        return self.fn is None


class Timers:
    """Calls at wall-clock instants (time.time()), for any number of agents on one event loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._armed: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run fn(*args) at wall-clock time `when` (at once if it has passed)."""
        handle = TimerHandle(when, fn, args)
        heapq.heappush(self._heap, (when, next(self._counter), handle))
        if when < self._armed_for:
            self._arm(when)
        return handle

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run fn(*args) after `delay` seconds."""
        return self.call_at(time.time() + delay, fn, *args)

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        loop = asyncio.get_running_loop()
        self._armed = loop.call_at(loop.time() + max(0.0, when - time.time()), self._fire)
        self._armed_for = when

    def _fire(self) -> None:
        self._armed, self._armed_for = None, float("inf")
        heap = self._heap
        now = time.time()
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            fn, args = handle.fn, handle.args
            if fn is None:
                continue
            handle.cancel()
            try:
                fn(*args)
            except Exception:
                logger.exception("timer callback %s failed", getattr(fn, "__qualname__", fn))
        while heap and heap[0][2].fn is None:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        """Cancel everything."""
        if self._armed is not None:
            self._armed.cancel()
        self._heap.clear()
        self._armed, self._armed_for = None, float("inf")
