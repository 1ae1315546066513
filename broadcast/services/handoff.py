"""A set of ids one thread notes and another takes whole, under a lock, so nothing noted is lost."""

from __future__ import annotations

import threading


class Handoff:
    """Ids noted by one thread (the receipt writer) and taken, all at once, by another (a worker job)."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, item: str) -> None:
        """Note an id for the next take."""
        with self._lock:
            self._ids.add(item)

    def discard(self, item: str) -> None:
        """Forget an id noted earlier, if it has not been taken yet."""
        with self._lock:
            self._ids.discard(item)

    def take(self) -> set[str]:
        """Every id noted since the last take; one noted meanwhile waits for the next take."""
        with self._lock:
            taken, self._ids = self._ids, set()
        return taken
