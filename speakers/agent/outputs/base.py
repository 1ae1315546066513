"""Output driver interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from speakers.agent.audio import Pcm
from speakers.errors import SpeakerError


class Playback:
    """One play handed to an output. Times are this device's wall clock (unix seconds)."""

    def __init__(self, began_at: float, duration_s: float) -> None:
        self.began_at = began_at  # when the first sample is (or was) played
        self.duration_s = duration_s  # all repeats and gaps
        self.file: str | None = None  # what a file sink wrote, if anything
        self.ended = False

    def end(self, at: float, *, completed: bool) -> float:
        """Stop at `at` (or note the natural end); return the seconds actually played."""
        self.ended = True
        if completed:
            return self.duration_s
        return min(max(0.0, at - self.began_at), self.duration_s)


class Output(ABC):
    """Where the agent's audio goes."""

    name = ""
    records = False  # True when record() keeps the events (saves building them otherwise)

    @abstractmethod
    def play(self, pcm: Pcm, *, start_at: float, volume: int, repeat: int, gap_s: float, label: str) -> Playback:
        """Begin playing at `start_at` (device clock), or at once if that has passed."""

    def record(self, event: dict[str, Any]) -> None:  # noqa: B027  (optional hook)
        """Note one timeline event (a file sink writes it; others ignore it)."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release the device."""


OutputFactory = Callable[..., Output]
OUTPUTS: dict[str, OutputFactory] = {}


def register(name: str, factory: OutputFactory) -> None:
    """Make `factory` the output driver called `name`."""
    OUTPUTS[name] = factory


def create_output(name: str, **options: Any) -> Output:
    """Build the output called `name` (options go to its factory)."""
    factory = OUTPUTS.get(name)
    if factory is None:
        raise SpeakerError(
            "speakers.unknown_output",
            f"没有名为 {name} 的音频输出。",
            f"No audio output called {name}; choose one of {', '.join(sorted(OUTPUTS))}.",
            kind="unsupported",
        )
    return factory(**options)


def total_duration(pcm: Pcm, repeat: int, gap_s: float) -> float:
    """Length of `repeat` plays of `pcm` with `gap_s` of silence between them."""
    return pcm.duration_s * repeat + gap_s * (repeat - 1)
