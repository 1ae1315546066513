"""Decoding cached media to PCM, once per file per process (the fleet simulator shares it)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import miniaudio

from speakers.errors import SpeakerError
from speakers.ffmpeg import decode_to_s16

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pcm:
    """Signed 16-bit little-endian interleaved samples."""

    samples: bytes
    sample_rate: int
    channels: int

    @property
    def frames(self) -> int:
        """Number of sample frames."""
        return len(self.samples) // (2 * self.channels)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def decode_file(path: Path) -> Pcm:
    """Decode MP3/WAV/FLAC/Vorbis in-process with miniaudio; anything else (Opus, AAC) with ffmpeg."""
    try:
        info = miniaudio.get_file_info(str(path))
        sound = miniaudio.decode_file(str(path), miniaudio.SampleFormat.SIGNED16, info.nchannels, info.sample_rate)
        return Pcm(sound.samples.tobytes(), sound.sample_rate, sound.nchannels)
    except miniaudio.DecodeError:
        logger.debug("miniaudio cannot decode %s; using ffmpeg", path.name)
    try:
        return Pcm(decode_to_s16(path, sample_rate=48000, channels=1), 48000, 1)
    except SpeakerError as exc:
        raise SpeakerError(
            "speakers.decode_failed", "媒体无法解码。", f"The media cannot be decoded: {exc.en}", kind="invalid"
        ) from exc


class PcmCache:
    """Decoded audio by hash, least recently used dropped beyond `cap_bytes`."""

    def __init__(self, cap_bytes: int = 64 * 1024 * 1024) -> None:
        self.cap_bytes = cap_bytes
        self._items: OrderedDict[str, Pcm] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[Pcm]] = {}

    def peek(self, sha256: str) -> Pcm | None:
        """Decoded audio if already at hand."""
        with self._lock:
            return self._items.get(sha256)

    def decode_future(
        self, sha256: str, path: Path, check: Callable[[str], object] | None = None
    ) -> asyncio.Future[Pcm]:
        """Decode in a worker thread, once per hash however many speakers ask.

        `check(sha256)` runs in that thread before the file is read (the cache's hash check) and may raise.
        """
        future = self._inflight.get(sha256)
        if future is None:
            loop = asyncio.get_running_loop()
            future = asyncio.ensure_future(loop.run_in_executor(None, self.get, sha256, path, check))
            self._inflight[sha256] = future
            future.add_done_callback(lambda _f: self._inflight.pop(sha256, None))
        return future

    def get(self, sha256: str, path: Path, check: Callable[[str], object] | None = None) -> Pcm:
        """Decoded audio of the cached file `path` (whose hash is `sha256`, which `check` confirms)."""
        with self._lock:
            pcm = self._items.get(sha256)
            if pcm is not None:
                self._items.move_to_end(sha256)
                return pcm
        if check is not None:
            check(sha256)
        pcm = decode_file(path)
        with self._lock:
            self._items[sha256] = pcm
            total = sum(len(p.samples) for p in self._items.values())
            while total > self.cap_bytes and len(self._items) > 1:
                _sha, old = self._items.popitem(last=False)
                total -= len(old.samples)
        return pcm


SHARED_PCM = PcmCache()
