"""Fault injection on a real agent (issue 7): a media server that is down, a corrupted or swapped cache
file, and inline media. What is checked is what the speaker played (its sink), not its logs."""

from __future__ import annotations

import base64
import os
import shutil
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.agent.audio import PcmCache
from speakers.mediaserver import MediaServer
from speakers.mosquitto_proc import free_port
from speakers.protocol import Play, Target
from tests.conftest import wait_for

from .conftest import AgentRunner, Clip, ServerSide


def _play(clip: Clip, url: str, *, start_in: float, bid: str, **extra: Any) -> Play:
    return Play(broadcast_id=bid, priority="normal", media_url=url, sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=time.time() + start_in, **extra)  # fmt: skip


def _frames(runner: AgentRunner, command_id: str) -> bytes:
    """The audio the speaker played for one command (its sink's WAV)."""
    started = [e for e in runner.timeline() if e["event"] == "started" and e["command_id"] == command_id]
    assert len(started) == 1
    with wave.open(str(runner.sink / started[0]["file"])) as wav:
        return wav.readframes(wav.getnframes())


def test_fetch_failure_gives_up_only_when_the_start_window_has_passed(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip]
) -> None:
    agent = make_agent()
    server.online(agent.id)
    dead = f"http://127.0.0.1:{free_port()}/tiny.mp3"  # nothing ever listens there
    play = _play(clips["tiny"], dead, start_in=0.5, bid="b-dead", expires_at=time.time() + 6)
    cid = server.send(play, [Target.speaker(agent.id)])
    acknowledged = server.receipt(agent.id, "acknowledged", command_id=cid)
    failed = server.receipt(agent.id, "failed", command_id=cid, timeout=30)
    assert failed.reason == "fetch_failed"
    assert failed.at >= acknowledged.at + 1 + 2, "retried after 1 s and 2 s before giving up"
    assert failed.at <= play.expires_at + 1, "given up when the next attempt would come after the latest start"
    assert len([r for r in server.events(agent.id) if r.event == "failed"]) == 1, "fetch_failed is final"


def test_media_server_down_then_up_still_plays_on_time(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], tmp_path: Path
) -> None:
    agent = make_agent()
    server.online(agent.id)
    root = tmp_path / "late-media"
    root.mkdir()
    shutil.copy(clips["tiny"].path, root / "tiny.mp3")
    port = free_port()
    play = _play(clips["tiny"], f"http://127.0.0.1:{port}/tiny.mp3", start_in=10, bid="b-late")
    cid = server.send(play, [Target.speaker(agent.id)])
    server.receipt(agent.id, "acknowledged", command_id=cid)
    backing_off = lambda: agent.call(lambda: clips["tiny"].sha256 in agent.agent.engine._backoff)  # noqa: E731
    wait_for(backing_off, "the first failed fetch", 20)
    media = MediaServer(root, port=port)
    media.start()
    try:
        started = server.receipt(agent.id, "started", command_id=cid, timeout=20)
        assert "late_ms" not in started.detail, "on time"
        server.receipt(agent.id, "finished", command_id=cid)
        assert not [r for r in server.events(agent.id) if r.event == "failed"]
    finally:
        media.stop()


def _corrupt(path: Path, mode: str, other: Path) -> None:
    stat = path.stat()
    if mode == "swapped":
        shutil.copy(other, path.with_suffix(".swap"))
        os.replace(path.with_suffix(".swap"), path)  # another valid MP3 under the same name
        return
    data = bytearray(path.read_bytes())
    for i in range(200):
        data[len(data) // 3 + i] ^= 0xFF
    path.write_bytes(bytes(data))
    if mode == "flipped, mtime kept":
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.mark.parametrize("mode", ["flipped", "flipped, mtime kept", "swapped"])
def test_corrupt_cache_file_is_fetched_again_and_the_right_audio_plays(
    mode: str,
    server: ServerSide,
    make_agent: Callable[..., AgentRunner],
    clips: dict[str, Clip],
    media: MediaServer,
) -> None:
    clip = clips["short"]
    agent = make_agent("cache", pcm=PcmCache())
    server.online(agent.id)
    first = server.send(_play(clip, media.url(clip.name), start_in=0.5, bid="b-1"), [Target.speaker(agent.id)])
    server.receipt(agent.id, "finished", command_id=first)
    original = _frames(agent, first)
    cached = agent.config.cache_dir / clip.sha256
    agent.stop()
    _corrupt(cached, mode, clips["long"].path)
    fetched_before = len([r for r in media.requests if r[0] == clip.name])
    restarted = time.time()
    again = make_agent("cache", pcm=PcmCache())  # a restarted speaker: nothing decoded in memory
    server.states.wait(lambda s: s.speaker_id == again.id and s.online and s.at > restarted)
    second = server.send(_play(clip, media.url(clip.name), start_in=1.0, bid="b-2"), [Target.speaker(again.id)])
    server.receipt(again.id, "finished", command_id=second)
    assert _frames(again, second) == original, "the clip's own audio played, not the corrupt or swapped file"
    assert len([r for r in media.requests if r[0] == clip.name]) > fetched_before, "fetched again"
    assert [e["sha256"] for e in again.timeline() if e["event"] == "cache_corrupt"] == [clip.sha256]
    server.states.wait(lambda s: s.speaker_id == again.id and s.cache_repairs == 1)


def test_inline_media_plays_without_a_fetch(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: MediaServer
) -> None:
    clip = clips["tiny"]
    agent = make_agent(pcm=PcmCache())
    server.online(agent.id)
    inline = base64.b64encode(clip.path.read_bytes()).decode()
    assert len(inline) <= 131072
    broken = base64.b64encode(b"not the clip").decode()
    # the negative path first: inline bytes that do not have the hash are not used; the URL is fetched
    cid = server.send(_play(clip, media.url(clip.name), start_in=0.3, bid="b-bad", media_b64=broken),
                      [Target.speaker(agent.id)])  # fmt: skip
    server.receipt(agent.id, "finished", command_id=cid)
    assert [r for r in media.requests if r[0] == clip.name], "fell back to the URL"
    reference = _frames(agent, cid)
    other = make_agent("inline", pcm=PcmCache())
    server.online(other.id)
    requests = len(media.requests)
    cid = server.send(_play(clip, media.url(clip.name), start_in=1.5, bid="b-inline", media_b64=inline),
                      [Target.speaker(other.id)])  # fmt: skip
    started = server.receipt(other.id, "started", command_id=cid)
    assert "late_ms" not in started.detail
    server.receipt(other.id, "finished", command_id=cid)
    assert len(media.requests) == requests, "nothing was fetched"
    assert _frames(other, cid) == reference
