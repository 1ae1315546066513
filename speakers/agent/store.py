"""Where an agent keeps what must survive a restart (keys, anti-replay state, queue, schedule, receipts)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from speakers.fsutil import atomic_write

logger = logging.getLogger(__name__)


class Store:
    """Persistence of one agent's state document."""

    durable = False

    def load(self) -> dict[str, Any] | None:
        """The last saved document, or None."""
        return None

    def save(self, data: dict[str, Any]) -> None:
        """Replace the saved document."""


class MemoryStore(Store):
    """Keeps nothing across restarts: for load tests of thousands of simulated speakers only."""


class FileStore(Store):
    """`state.json` in the agent's state folder, replaced atomically (temp file, fsync, rename)."""

    durable = True

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "state.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, Any] | None:
        """Read the document; a damaged one is moved aside (anti-replay then relies on expiry alone)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            aside = self.path.with_name(f"state.json.damaged-{int(time.time())}")
            os.replace(self.path, aside)
            logger.error("agent state was damaged; moved to %s and starting fresh", aside.name)
            return None
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Write the document durably."""
        atomic_write(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")), mode=0o600)
