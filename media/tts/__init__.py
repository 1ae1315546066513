"""TTS engines: a registry of drivers (edge, espeak, piper) and the fallback chain over them."""

from . import edge, espeak, piper  # noqa: F401 - importing registers the drivers
from .base import ENGINES, SynthJob, SynthOutput, TtsEngine, Voice, register, unregister
from .chain import Spoken, engine_order, speak, split_voice

__all__ = [
    "ENGINES",
    "Spoken",
    "SynthJob",
    "SynthOutput",
    "TtsEngine",
    "Voice",
    "engine_order",
    "register",
    "speak",
    "split_voice",
    "unregister",
]
