"""Foreground work of this process (an alert's launch) and the background threads that stand aside for it.

`broadcast run` serves the web tier and runs the worker in one process, and so under one interpreter lock:
while a county's receipts pour in, the receipt writer and the receipt consumer would take most of that lock
(and, on SQLite, the database's write turn) from the request that is launching an alert, whose tone must
reach the broker and whose speech must be synthesized and sent within seconds. Background threads wait,
not holding anything, while foreground work runs; receipts wait in memory meanwhile and are applied after.
A background thread never waits longer than its own limit, so a stuck request cannot stop the bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Foreground:
    """A count of foreground work under way in this process, and a wait for it to end."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self.waiting = 0  # background threads standing aside right now

    @contextmanager
    def running(self) -> Iterator[None]:
        """Mark a block as foreground work: background threads stand aside until it ends."""
        with self._cond:
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    self._cond.notify_all()

    def wait_clear(self, limit_s: float) -> float:
        """Wait until no foreground work runs, at most `limit_s` seconds; return the seconds waited."""
        if not self._running:  # the common case: no lock taken
            return 0.0
        began = time.monotonic()
        with self._cond:
            self.waiting += 1
            try:
                self._cond.wait_for(lambda: not self._running, limit_s)
            finally:
                self.waiting -= 1
        return time.monotonic() - began


FOREGROUND = Foreground()  # this process's
