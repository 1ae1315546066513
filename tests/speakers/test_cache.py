"""Media cache against a real HTTP server: verification, resume with Range, LRU cap, failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.agent.cache import MediaCache
from speakers.errors import SpeakerError
from speakers.mediaserver import MediaServer
from speakers.protocol import Play, Target

from .conftest import GRID, AgentRunner, Clip, ServerSide


def test_fetch_verifies_and_caches(media: MediaServer, clips: dict[str, Clip], tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", 10_000_000)
    clip = clips["short"]
    path = cache.fetch_sync(media.url(clip.name), clip.sha256)
    assert path.read_bytes() == clip.path.read_bytes()
    assert cache.has(clip.sha256)
    assert cache.size_bytes == path.stat().st_size
    cache.fetch_sync(media.url(clip.name), clip.sha256)
    assert len(media.requests) == 1, "served from the cache the second time"
    assert MediaCache(tmp_path / "cache", 10_000_000).has(clip.sha256), "found again after a restart"


def test_hash_mismatch_keeps_nothing(media: MediaServer, clips: dict[str, Clip], tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", 10_000_000, retry_delay_s=0.01)
    with pytest.raises(SpeakerError) as exc:
        cache.fetch_sync(media.url(clips["short"].name), clips["long"].sha256)
    assert exc.value.code == "speakers.hash_mismatch"
    assert exc.value.details["expected"] == clips["long"].sha256
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_interrupted_download_resumes_with_range(media: MediaServer, clips: dict[str, Clip], tmp_path: Path) -> None:
    clip = clips["long"]
    size = clip.path.stat().st_size
    media.cut_next(clip.name, size // 3)
    cache = MediaCache(tmp_path / "cache", 10_000_000, retry_delay_s=0.01)
    path = cache.fetch_sync(media.url(clip.name), clip.sha256)
    assert path.read_bytes() == clip.path.read_bytes()
    assert media.requests == [(clip.name, None), (clip.name, f"bytes={size // 3}-")], "the second request resumed"


def test_refused_url_is_not_retried(media: MediaServer, tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", 10_000_000, retry_delay_s=0.01)
    with pytest.raises(SpeakerError) as exc:
        cache.fetch_sync(media.url("expired-link.mp3"), "0" * 64)
    assert exc.value.code == "speakers.fetch_refused"
    assert exc.value.details["status"] == 404
    assert len(media.requests) == 1


def test_lru_cap_keeps_pinned_and_recent(media: MediaServer, clips: dict[str, Clip], tmp_path: Path) -> None:
    short, long, alarm, tiny = (clips[n] for n in ("short", "long", "alarm", "tiny"))
    cap = short.path.stat().st_size + alarm.path.stat().st_size + tiny.path.stat().st_size
    cache = MediaCache(tmp_path / "cache", cap)
    cache.pinned = lambda: {short.sha256}
    for clip in (short, alarm, tiny):
        cache.fetch_sync(media.url(clip.name), clip.sha256)
        time.sleep(0.01)
    cache.touch(tiny.sha256)
    assert long.path.stat().st_size > alarm.path.stat().st_size
    cache.fetch_sync(media.url(long.name), long.sha256)
    assert cache.has(short.sha256), "pinned: still scheduled"
    assert cache.has(long.sha256), "the file just fetched stays"
    assert not cache.has(alarm.sha256), "the least recently used went first"
    assert not cache.has(tiny.sha256), "then the next, while still over the cap"
    assert cache.size_bytes == short.path.stat().st_size + long.path.stat().st_size
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock"))
    assert cached == sorted(cache._index)


def test_concurrent_requests_share_one_download(media: MediaServer, clips: dict[str, Clip], tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", 10_000_000)
    clip = clips["alarm"]

    async def many() -> list[Path]:
        return await asyncio.gather(*(cache.fetch(media.url(clip.name), clip.sha256) for _ in range(20)))

    paths = asyncio.run(many())
    assert len(set(paths)) == 1
    assert len(media.requests) == 1


def test_agent_reports_a_hash_mismatch_and_plays_nothing(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent()
    server.online(agent.id)
    wrong = Play(broadcast_id="tampered-media", priority="normal", media_url=media.url(clips["short"].name),
                 sha256=clips["long"].sha256, duration_ms=1000, start_at=time.time() + 0.3)  # fmt: skip
    server.send(wrong, [Target.region(GRID)])
    failed = server.receipt(agent.id, "failed", broadcast_id="tampered-media")
    assert failed.reason == "hash_mismatch"
    assert not [e for e in agent.timeline() if e["event"] == "started"]


def test_two_processes_sharing_a_cache_download_once(
    media: MediaServer, clips: dict[str, Clip], tmp_path: Path
) -> None:
    clip = clips["long"]
    script = (
        "import sys; from pathlib import Path; from speakers.agent.cache import MediaCache; "
        "MediaCache(Path(sys.argv[1]), 10**8).fetch_sync(sys.argv[2], sys.argv[3])"
    )
    args = [str(tmp_path / "shared"), media.url(clip.name), clip.sha256]
    children = [subprocess.Popen([sys.executable, "-c", script, *args]) for _ in range(4)]
    assert [c.wait(30) for c in children] == [0, 0, 0, 0]
    assert (tmp_path / "shared" / clip.sha256).read_bytes() == clip.path.read_bytes()
    assert len(media.requests) == 1, "the others found the file the first one fetched"
