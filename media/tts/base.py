"""TTS driver base: the engine interface, the job handed to an engine, and the registry."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import MediaConfig


@dataclass(frozen=True)
class Voice:
    """One voice the console can offer."""

    engine: str  # registry name of the engine
    id: str  # engine-specific voice id
    label_zh: str  # label shown in the voice picker
    online: bool = False  # needs the internet

    @property
    def label(self) -> str:
        """The label to show (same as label_zh; the console is Chinese)."""
        return self.label_zh

    @property
    def key(self) -> str:
        """The "engine:id" form accepted by synthesize_text(voice=...)."""
        return f"{self.engine}:{self.id}"


@dataclass
class SynthJob:
    """One synthesis request for one engine: text pieces in, an audio file in out_dir out."""

    chunks: list[str]  # normalized text, each piece short enough for the engine
    voice: str  # engine-specific voice id
    rate: float  # speed factor, 1.0 = the engine's normal speed
    out_dir: Path  # where the engine writes its output file
    config: MediaConfig
    cancel: threading.Event = field(default_factory=threading.Event)  # set by the chain on a deadline
    started_at: float = field(default_factory=time.monotonic)
    first_audio_at: float | None = None  # monotonic time the first samples arrived
    last_audio_at: float | None = None  # monotonic time of the latest samples

    def progress(self) -> None:
        """Engines call this whenever audio arrives (the chain's stall watchdog reads it)."""
        now = time.monotonic()
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.last_audio_at = now


@dataclass(frozen=True)
class SynthOutput:
    """What an engine produced: a file and the ffmpeg input arguments that decode it."""

    path: Path
    input_args: list[str]  # e.g. ["-f", "wav", "-i", "<path>"]


class TtsEngine:
    """Base class of TTS drivers; a driver module ends with register(ItsEngine())."""

    name = "base"
    label_zh = ""
    online = False  # needs the internet (shown in the console)

    def enabled(self, config: MediaConfig) -> bool:
        """Whether the engine can run with this configuration (e.g. piper needs a model)."""
        return True

    def voices(self, config: MediaConfig) -> list[Voice]:
        """Voices this engine offers."""
        return []

    def default_voice(self, config: MediaConfig) -> str:
        """The configured default voice id."""
        raise NotImplementedError

    def first_audio_timeout(self, config: MediaConfig) -> float:
        """Seconds without any audio (at the start, or between pieces) before the chain gives up."""
        return config.tts_first_audio_timeout_s

    def total_timeout(self, config: MediaConfig) -> float:
        """Seconds the whole synthesis may take."""
        return config.tts_total_timeout_s

    def synthesize(self, job: SynthJob) -> SynthOutput:
        """Speak job.chunks into a file in job.out_dir; raise MediaError or any error on failure."""
        raise NotImplementedError


ENGINES: dict[str, TtsEngine] = {}


def register(engine: TtsEngine) -> None:
    """Add (or replace) an engine in the registry under engine.name."""
    ENGINES[engine.name] = engine


def unregister(name: str) -> None:
    """Remove an engine from the registry (tests add and remove fakes)."""
    ENGINES.pop(name, None)
