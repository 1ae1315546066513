"""A fair work queue for many agents in one event loop (the fleet simulator).

asyncio runs every ready callback of an iteration before it looks at timers and finished background jobs
again. When thousands of simulated speakers receive a region command at once, handling them all inside one
iteration would starve the timers that start plays and the callbacks that report a finished download. The
queue handles at most `chunk` jobs per iteration instead, so everything else interleaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class WorkQueue:
    """FIFO of callables drained `chunk` at a time, one batch per event-loop iteration."""

    def __init__(self, chunk: int = 100) -> None:
        self.chunk = chunk
        self._jobs: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._scheduled = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` soon, after the jobs already queued."""
        self._jobs.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def __len__(self) -> int:
        return len(self._jobs)

    def _drain(self) -> None:
        jobs = self._jobs
        for _ in range(min(self.chunk, len(jobs))):
            fn, args = jobs.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("queued job %s failed", getattr(fn, "__qualname__", fn))
        if jobs:
            asyncio.get_running_loop().call_soon(self._drain)
        else:
            self._scheduled = False
