"""The sound card output (miniaudio): software volume, start aligned to the wall clock.

The device is opened ahead of the start time and fed silence until the start instant, so the first
sample leaves at the planned moment (plus the device's fixed buffer latency) however busy the agent is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator

import numpy as np

from speakers.agent.audio import Pcm
from speakers.agent.outputs.base import Output, Playback, register, total_duration
from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)


def volume_gain(volume: int) -> float:
    """Map 0-100 to a gain: 100 = unity, each 10 steps below about -6 dB, 0 = silent."""
    if volume <= 0:
        return 0.0
    return float(10 ** ((volume - 100) * 0.03))


def render(pcm: Pcm, volume: int, repeat: int, gap_s: float) -> bytes:
    """The samples to play: repeats with gaps, scaled by the volume (clipped to 16 bits)."""
    data = np.frombuffer(pcm.samples, dtype="<i2").astype(np.float32) * volume_gain(volume)
    block = np.clip(data, -32768, 32767).astype("<i2").tobytes()
    gap = b"\x00" * (int(gap_s * pcm.sample_rate) * 2 * pcm.channels)
    return gap.join([block] * repeat)


class CardPlayback(Playback):
    """One play on an open device."""

    def __init__(self, device: object, began_at: float, duration_s: float) -> None:
        super().__init__(began_at, duration_s)
        self._device = device

    def end(self, at: float, *, completed: bool) -> float:
        """Stop the device and return the seconds played."""
        played = super().end(at, completed=completed)
        try:
            self._device.close()  # type: ignore[attr-defined]
        except Exception:
            logger.exception("closing the audio device failed")
        return played


class SoundcardOutput(Output):
    """Plays through the default (or a chosen backend's) audio device."""

    name = "soundcard"

    def __init__(self, backends: list[str] | None = None, buffer_ms: int = 100) -> None:
        try:
            import miniaudio  # only a device with a sound card needs it loaded
        except ImportError as exc:
            raise SpeakerError(
                "speakers.no_soundcard",
                "未安装 miniaudio，无法使用声卡输出。",
                "miniaudio is not installed; the sound card output is unavailable.",
                kind="unavailable",
            ) from exc
        self._miniaudio = miniaudio
        self._backends = [getattr(miniaudio.Backend, b.upper()) for b in backends] if backends else None
        self._buffer_ms = buffer_ms
        self._lock = threading.Lock()

    def play(self, pcm: Pcm, *, start_at: float, volume: int, repeat: int, gap_s: float, label: str) -> Playback:
        """Open the device now and start the audio at `start_at`."""
        ma = self._miniaudio
        data = render(pcm, volume, repeat, gap_s)
        frame_bytes = 2 * pcm.channels
        began = max(start_at, time.time())
        try:
            device = ma.PlaybackDevice(
                output_format=ma.SampleFormat.SIGNED16,
                nchannels=pcm.channels,
                sample_rate=pcm.sample_rate,
                buffersize_msec=self._buffer_ms,
                backends=self._backends,
                app_name="speaker-agent",
            )
        except ma.MiniaudioError as exc:
            raise SpeakerError(
                "speakers.output_failed",
                f"声卡无法打开：{exc}",
                f"The sound card cannot be opened: {exc}",
                kind="unavailable",
            ) from exc

        def stream() -> Generator[bytes, int, None]:
            frames = yield b""
            lead = int(max(0.0, began - time.time()) * pcm.sample_rate)
            pos = -lead * frame_bytes
            while pos < len(data):
                want = frames * frame_bytes
                if pos < 0:
                    silence = min(want, -pos)
                    chunk = b"\x00" * silence + data[: want - silence]
                else:
                    chunk = data[pos : pos + want]
                pos += len(chunk)
                frames = yield chunk

        generator = stream()
        next(generator)
        device.start(generator)
        return CardPlayback(device, began, total_duration(pcm, repeat, gap_s))


def _factory(*, backends: list[str] | None = None, **_options: object) -> Output:
    return SoundcardOutput(backends)


register("soundcard", _factory)
