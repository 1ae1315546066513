"""Media a speaker must always hold (the attention tone): fetched when a snapshot lists it, pinned while listed.

An alert's first sound must not wait for a download or a busy web tier, so every schedule snapshot names
the media to keep. The agent fetches each entry at once, retries a failed fetch with the same backoff as a
play's media (1, 2, 4 ... 30 s) for as long as the entry stays listed, decodes it ahead of time, and the cache
never evicts it while it is listed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from speakers.agent.fetching import FETCH_RETRY_MAX_S, FETCH_RETRY_MIN_S
from speakers.errors import SpeakerError
from speakers.messages import KeepMedia

if TYPE_CHECKING:
    from speakers.agent.core import Agent

logger = logging.getLogger(__name__)


class KeptMedia:
    """The keep list of one agent and the fetches that fill it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.entries: dict[str, KeepMedia] = {}
        self._backoff: dict[str, float] = {}
        self._busy: set[str] = set()

    def hashes(self) -> set[str]:
        """The hashes the cache must not evict."""
        return set(self.entries)

    def replace(self, entries: tuple[KeepMedia, ...]) -> None:
        """Take a snapshot's keep list (replacing the previous one) and fetch what is missing."""
        self.entries = {entry.sha256: entry for entry in entries}
        for sha in list(self._backoff):
            if sha not in self.entries:
                del self._backoff[sha]
        self.fetch_all()

    def fetch_all(self) -> None:
        """Fetch and decode every listed file not yet at hand (inside the event loop)."""
        for sha in self.entries:
            self._fetch(sha)

    def ready(self) -> bool:
        """True when every listed file is cached."""
        return all(self.agent.cache.has(sha) for sha in self.entries)

    def _fetch(self, sha: str) -> None:
        agent = self.agent
        entry = self.entries.get(sha)
        if entry is None or sha in self._busy or agent.engine.closed:
            return
        if agent.cache.has(sha):
            if agent.pcm.peek(sha) is None:
                self._warm(sha)
            return
        self._busy.add(sha)
        future = agent.cache.fetch_future(entry.media_url, sha)
        future.add_done_callback(lambda f: self._fetched(sha, f))

    def _fetched(self, sha: str, future: asyncio.Future[Any]) -> None:
        self._busy.discard(sha)
        if self.agent.engine.closed or sha not in self.entries:
            return
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is None:
            self._backoff.pop(sha, None)
            logger.info("%s: keeps %s", self.agent.config.speaker_id, sha[:12])
            self._warm(sha)
            return
        delay = self._backoff.get(sha, FETCH_RETRY_MIN_S)
        self._backoff[sha] = min(delay * 2, FETCH_RETRY_MAX_S)
        logger.info("%s: kept media %s not fetched (%s); retrying in %.0f s", self.agent.config.speaker_id,
                    sha[:12], error, delay)  # fmt: skip
        self.agent.timers.call_later(delay, self._fetch, sha)

    def _warm(self, sha: str) -> None:
        """Decode ahead of time, so the first alert's tone starts without a decode either."""
        cache = self.agent.cache
        future = self.agent.pcm.decode_future(sha, cache.path_for(sha), check=cache.verify)
        future.add_done_callback(lambda f: self._warmed(sha, f))

    def _warmed(self, sha: str, future: asyncio.Future[Any]) -> None:
        error = future.exception() if not future.cancelled() else None
        if isinstance(error, SpeakerError) and error.code == "speakers.cache_corrupt" and not self.agent.engine.closed:
            self.agent.cache.discard(sha)  # fetched again right away
            self._fetch(sha)
        elif error is not None:
            logger.warning("%s: kept media %s not decodable: %s", self.agent.config.speaker_id, sha[:12], error)

    def to_list(self) -> list[dict[str, Any]]:
        """The keep list as saved in the agent's state."""
        return [entry.to_dict() for entry in self.entries.values()]

    def load(self, data: list[dict[str, Any]]) -> None:
        """Restore a saved keep list (fetched once the agent starts)."""
        self.entries = {
            str(d["sha256"]): KeepMedia(str(d["sha256"]), str(d["media_url"]), int(d["duration_ms"])) for d in data
        }
