"""The file sink: writes what was played as WAV files plus a `timeline.jsonl` of events.

The WAV holds the signal sent to the amplifier at unity gain (the volume setting is recorded in the
timeline, as an amplifier setting, not applied to the samples), cut at the moment the play ended: a play
preempted halfway leaves only the half that was heard.
"""

from __future__ import annotations

import json
import re
import threading
import time
import wave
from io import BytesIO
from pathlib import Path
from typing import Any

from speakers.agent.audio import Pcm
from speakers.agent.outputs.base import Output, Playback, register, total_duration
from speakers.fsutil import atomic_write

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SinkPlayback(Playback):
    """A play whose audio is written when it ends."""

    def __init__(self, sink: SinkOutput, pcm: Pcm, began_at: float, repeat: int, gap_s: float, label: str) -> None:
        super().__init__(began_at, total_duration(pcm, repeat, gap_s))
        self._sink, self._pcm, self._repeat, self._gap_s = sink, pcm, repeat, gap_s
        self.file = f"{int(began_at * 1000)}-{_UNSAFE.sub('_', label)[:80]}.wav"

    def end(self, at: float, *, completed: bool) -> float:
        """Write the audio actually played and return its length."""
        if self.ended:
            return 0.0
        played = super().end(at, completed=completed)
        pcm = self._pcm
        frame_bytes = 2 * pcm.channels
        gap = b"\x00" * (int(self._gap_s * pcm.sample_rate) * frame_bytes)
        audio = (gap.join([pcm.samples] * self._repeat)) if self._repeat > 1 else pcm.samples
        keep = len(audio) if completed else min(len(audio), int(played * pcm.sample_rate) * frame_bytes)
        self._sink.write_wav(self.file or "play.wav", audio[:keep], pcm)
        return keep / frame_bytes / pcm.sample_rate


class SinkOutput(Output):
    """Writes into one folder: `<began-ms>-<command id>.wav` per play and `timeline.jsonl`."""

    name = "sink"
    records = True

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeline = self.directory / "timeline.jsonl"
        self._lock = threading.Lock()

    def play(self, pcm: Pcm, *, start_at: float, volume: int, repeat: int, gap_s: float, label: str) -> Playback:
        """Start (virtually) at `start_at`, or now if that has passed."""
        return SinkPlayback(self, pcm, max(start_at, time.time()), repeat, gap_s, label)

    def write_wav(self, name: str, samples: bytes, pcm: Pcm) -> None:
        """Write one WAV atomically."""
        buffer = BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(pcm.channels)
            wav.setsampwidth(2)
            wav.setframerate(pcm.sample_rate)
            wav.writeframes(samples)
        atomic_write(self.directory / name, buffer.getvalue(), mode=0o644, durable=False)

    def record(self, event: dict[str, Any]) -> None:
        """Append one JSON line to timeline.jsonl."""
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock, open(self.timeline, "a", encoding="utf-8") as fh:
            fh.write(line)


def _factory(*, sink_dir: Path | None = None, **_options: object) -> Output:
    if sink_dir is None:
        raise ValueError("the sink output needs sink_dir")
    return SinkOutput(sink_dir)


register("sink", _factory)
