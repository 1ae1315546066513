"""Getting a play's media ready before it is due: fetch, decode, repair a spoiled cache file, retry (a part of
`PlaybackEngine`, kept apart for size)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import TYPE_CHECKING, Any

from speakers.errors import SpeakerError

if TYPE_CHECKING:
    from speakers.agent.engine import PlaybackEngine
    from speakers.agent.policy import PlayItem
    from speakers.messages import Play

logger = logging.getLogger(__name__)

FETCH_RETRY_MIN_S = 1.0  # a failed fetch is retried after 1, 2, 4 ... seconds
FETCH_RETRY_MAX_S = 30.0  # at most this long apart, while the play's latest start is still ahead
RETRIED = ("fetch_failed",)  # refused (4xx), too large or a wrong hash will not get better by retrying


class MediaIntake:
    """Accepts plays and keeps their media fetched and decoded; re-plans when media becomes ready."""

    def accept(self: PlaybackEngine, item: PlayItem) -> None:
        """Queue a verified play, start fetching its media, and re-plan."""
        self.agent.planner.add(item)
        self.prefetch(item)
        self.replan(persist=False)  # the command handler persists once it is done

    def ready(self: PlaybackEngine, item: PlayItem) -> bool:
        """Media fetched and decoded."""
        return self.agent.pcm.peek(item.sha256) is not None and self.agent.cache.has(item.sha256)

    def take_inline(self: PlaybackEngine, play: Play) -> None:
        """Cache media that rode inline in the command (emergency and tones: no fetch, no web tier)."""
        if play.media_b64 is None or self.agent.cache.has(play.sha256):
            return
        try:
            data = base64.b64decode(play.media_b64, validate=True)
            self.agent.cache.store_bytes(play.sha256, data)
        except (binascii.Error, ValueError, SpeakerError, OSError) as exc:
            logger.warning("inline media %s not usable (%s); fetching it by URL", play.sha256[:12], exc)

    def prefetch(self: PlaybackEngine, item: PlayItem) -> None:
        """Fetch and decode the media of `item` unless already at hand or under way."""
        if self.ready(item) or item.sha256 in self._fetching:
            return
        cache = self.agent.cache
        self._fetching.add(item.sha256)
        if cache.has(item.sha256):
            self._decode(item)
            return
        future = cache.fetch_future(item.media_url, item.sha256)
        future.add_done_callback(lambda f: self._fetched(item, f))

    def _fetched(self: PlaybackEngine, item: PlayItem, future: asyncio.Future[Any]) -> None:
        if self.closed:
            return
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is None:
            self._backoff.pop(item.sha256, None)
            self._decode(item)
            return
        self._fetching.discard(item.sha256)
        self._fetch_failed(item, error)

    def _decode(self: PlaybackEngine, item: PlayItem) -> None:
        cache = self.agent.cache
        future = self.agent.pcm.decode_future(item.sha256, cache.path_for(item.sha256), check=cache.verify)
        future.add_done_callback(lambda f: self._decoded(item, f))

    def _decoded(self: PlaybackEngine, item: PlayItem, future: asyncio.Future[Any]) -> None:
        if self.closed:
            return
        self._fetching.discard(item.sha256)
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if isinstance(error, SpeakerError) and error.code == "speakers.cache_corrupt":
            self._repair(item, error)
            return
        if error is not None:
            self._fetch_failed(item, error)
            return
        self.agent.cache.touch(item.sha256)
        self.replan()

    def _repair(self: PlaybackEngine, item: PlayItem, error: SpeakerError) -> None:
        """A cached file lost its hash: delete it, say so (state and timeline), and fetch it again."""
        agent = self.agent
        agent.cache.discard(item.sha256)
        agent.cache_repairs += 1
        logger.warning("%s: cached media %s was corrupt; fetching it again", agent.config.speaker_id, item.sha256[:12])
        if agent.output.records:
            agent.output.record(
                {"event": "cache_corrupt", "sha256": item.sha256, "broadcast_id": item.broadcast_id,
                 "command_id": item.command_id, "at": time.time(), "speaker_id": agent.config.speaker_id}
            )  # fmt: skip
        agent.publish_state()
        self.prefetch(item)

    def _fetch_failed(self: PlaybackEngine, item: PlayItem, error: BaseException) -> None:
        code = error.code if isinstance(error, SpeakerError) else "speakers.fetch_failed"
        reason = code.removeprefix("speakers.")
        now = self.agent.clock.server_now()
        delay = self._backoff.get(item.sha256, FETCH_RETRY_MIN_S)
        affected = [i for i in self.agent.planner.pending.values() if i.sha256 == item.sha256]
        # retried while the latest start is still ahead of the next attempt; fetch_failed is final once sent
        retry = [i for i in affected if reason in RETRIED and now + delay < i.expires_at]
        for pending in affected:
            if pending in retry:
                continue
            self.agent.planner.remove(pending.play_id)
            self.agent.report("failed", pending, reason=reason, detail={"error": str(error)[:200]})
        if retry:
            logger.info("media %s not fetched (%s); retrying in %.0f s", item.sha256[:12], reason, delay)
            self._backoff[item.sha256] = min(delay * 2, FETCH_RETRY_MAX_S)
            self.agent.timers.call_later(delay, self._retry_fetch, item.sha256)
        else:
            self._backoff.pop(item.sha256, None)
        self.agent.persist()

    def _retry_fetch(self: PlaybackEngine, sha256: str) -> None:
        """Fetch again for whichever play still waits for this media."""
        if self.closed:
            return
        waiting = next((i for i in self.agent.planner.pending.values() if i.sha256 == sha256), None)
        if waiting is None:
            self._backoff.pop(sha256, None)
            return
        self.prefetch(waiting)
