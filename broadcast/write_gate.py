"""A first-come, first-served gate for the short write transactions of one process on SQLite.

SQLite has one writer at a time, and a writer that finds the file locked polls it, sleeping a little longer
each time. When the receipt writer commits batch after batch, the file is free only for the microseconds
between two of its batches, so another thread's write (marking a county's deliveries sent after an alert)
can poll for the whole busy timeout and fail. Queueing this process's writers in arrival order bounds
that wait to the transactions ahead of it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class WriteGate:
    """A fair (FIFO), re-entrant lock; a waiter that times out goes ahead without it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self, timeout: float) -> bool:
        """Wait for our turn (at most `timeout` seconds); True when the gate is held."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            self._waiting.append(me)
            ok = self._cond.wait_for(lambda: self._owner is None and self._waiting[0] == me, timeout)
            if not ok:
                self._waiting.remove(me)
                self._cond.notify_all()
                return False
            self._waiting.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        """Let the next waiter in."""
        with self._cond:
            assert self._owner == threading.get_ident(), "released by a thread that does not hold the gate"
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    @contextmanager
    def held(self, timeout: float) -> Iterator[bool]:
        """Hold the gate for a block; the block runs anyway (unqueued) if the wait times out."""
        got = self.acquire(timeout)
        try:
            yield got
        finally:
            if got:
                self.release()
