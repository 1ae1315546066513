"""A fair work queue for many agents in one event loop (the fleet simulator).

asyncio runs every ready callback of an iteration before it looks at timers and finished background jobs
again. When thousands of simulated speakers receive a region command at once, handling them all inside one
iteration would starve the timers that start plays and the callbacks that report a finished download. The
queue handles at most `chunk` jobs per iteration instead, so everything else interleaves.

Jobs are two FIFOs: what a speaker received (commands, time replies) and, after it, what speakers send
(receipts, `later=True`). A real speaker handles its own command whatever its neighbours are reporting; in one
process, the start receipts of thousands of speakers would otherwise delay the commands still arriving for
the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


Job = tuple[Callable[..., Any], tuple[Any, ...]]


class WorkQueue:
    """Two FIFOs of callables (received first, then `later` ones), drained `chunk` at a time per loop iteration."""

    def __init__(self, chunk: int = 100) -> None:
        self.chunk = chunk
        self._jobs: deque[Job] = deque()
        self._later: deque[Job] = deque()
        self._scheduled = False

    def submit(self, fn: Callable[..., Any], *args: Any, later: bool = False) -> None:
        """Run `fn(*args)` soon, after the jobs already queued (`later`: after every job not marked so)."""
        (self._later if later else self._jobs).append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def __len__(self) -> int:
        return len(self._jobs) + len(self._later)

    def _drain(self) -> None:
        for _ in range(self.chunk):
            jobs = self._jobs or self._later
            if not jobs:
                break
            fn, args = jobs.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("queued job %s failed", getattr(fn, "__qualname__", fn))
        if self._jobs or self._later:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._scheduled = False
