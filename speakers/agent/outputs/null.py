"""The null output: plays nothing, keeps exact virtual timing (load tests, silent test rigs)."""

from __future__ import annotations

import time

from speakers.agent.audio import Pcm
from speakers.agent.outputs.base import Output, Playback, register, total_duration


class NullOutput(Output):
    """Discards audio; a play lasts as long as it would on a speaker."""

    name = "null"

    def play(self, pcm: Pcm, *, start_at: float, volume: int, repeat: int, gap_s: float, label: str) -> Playback:
        """Start (virtually) at `start_at`, or now if that has passed."""
        return Playback(max(start_at, time.time()), total_duration(pcm, repeat, gap_s))


def _factory(**_options: object) -> Output:
    return NullOutput()


register("null", _factory)
