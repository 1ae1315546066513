"""Short-lived per-process caches (token principals, API read answers), dropped whenever this process commits.

Every commit made in this process, through any engine or session, starts a new generation; an entry made in
an older generation is never served. So a write made here is seen by the very next read here, and a write
made by another process (another gunicorn worker, the worker process) is seen once the entry's TTL ends.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

V = TypeVar("V")
_counter = itertools.count(1)
_generation = 0


def generation() -> int:
    """The current generation: it changes on every commit made in this process."""
    return _generation


def _bump(*_args: Any) -> None:
    global _generation
    _generation = next(_counter)


# Before the commit (any Core or ORM transaction) and after it (ORM sessions): a reader that ran between the
# two cannot store what it read under the new generation.
event.listen(Engine, "commit", _bump)
event.listen(Session, "after_commit", _bump)


class TtlCache(Generic[V]):
    """A bounded mapping whose entries live `ttl_s` seconds and only within the generation they were read in."""

    def __init__(self, ttl_s: float, max_size: int) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size  # entries, or the caller's own measure (see put's size)
        self._used = 0
        self._entries: dict[Any, tuple[float, int, int, V]] = {}

    def get(self, key: Any) -> V | None:
        """The value stored under `key`, if it is still fresh and no commit happened since it was read."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, made_in, _size, value = entry
        if made_in != _generation or time.monotonic() >= expires:
            return None
        return value

    def put(self, key: Any, value: V, made_in: int, size: int = 1) -> None:
        """Store a value read in generation `made_in` (not stored if a commit happened since)."""
        if made_in != _generation or size > self.max_size:
            return
        if self._used + size > self.max_size:
            self._entries.clear()  # simple and bounded: a full cache starts again
            self._used = 0
        old = self._entries.pop(key, None)
        if old is not None:
            self._used -= old[2]
        self._entries[key] = (time.monotonic() + self.ttl_s, made_in, size, value)
        self._used += size
