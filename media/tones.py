"""Signals the project generates itself: the warning attention tone and the chimes."""

from __future__ import annotations

import numpy as np

from .errors import MediaError

# EAS attention signal: two simultaneous sines (47 CFR 11.31), recognisable and hard to mistake.
ATTENTION_FREQS_HZ = (853.0, 960.0)
# Chimes: a bright major triad (E5, G#5, B5 + octave), ascending to open, descending to close.
_CHIME_NOTES_HZ = (659.26, 830.61, 987.77, 1318.51)
_NOTE_STEP_S = 0.28
_NOTE_DECAY_S = 0.35
_NOTE_LEN_S = 1.2
CHIMES = ("start", "end")


def _fade(x: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    n = min(len(x) // 2, int(sr * seconds))
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def attention_tone_samples(sample_rate: int, seconds: float) -> np.ndarray:
    """The dual-tone (853 Hz + 960 Hz) attention signal, SECONDS long, peak 0.5, soft 20 ms edges."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = sum(np.sin(2 * np.pi * f * t) for f in ATTENTION_FREQS_HZ) * 0.25
    return _fade(np.asarray(x, dtype=np.float64), sample_rate, 0.02)


def _bell(sample_rate: int, freq: float) -> np.ndarray:
    t = np.arange(int(sample_rate * _NOTE_LEN_S)) / sample_rate
    partials = ((1.0, 1.0), (2.0, 0.35), (3.0, 0.12), (4.2, 0.05))
    x = sum(a * np.sin(2 * np.pi * freq * m * t) * np.exp(-t * m**0.5 / _NOTE_DECAY_S) for m, a in partials)
    attack = min(len(t), int(sample_rate * 0.004))
    env = np.ones(len(t))
    env[:attack] = np.linspace(0, 1, attack)
    return np.asarray(x, dtype=np.float64) * env


def chime_samples(sample_rate: int, which: str = "start") -> np.ndarray:
    """A four-note bell chime: ascending for "start", descending for "end"; peak 0.5."""
    if which not in CHIMES:
        raise MediaError(
            "media.bad_chime", "没有这种提示音。", f"No such chime: {which!r}.", kind="invalid", allowed=list(CHIMES)
        )
    notes = _CHIME_NOTES_HZ if which == "start" else _CHIME_NOTES_HZ[::-1]
    step = int(sample_rate * _NOTE_STEP_S)
    bell_len = int(sample_rate * _NOTE_LEN_S)
    out = np.zeros(step * (len(notes) - 1) + bell_len)
    for i, f in enumerate(notes):
        out[i * step : i * step + bell_len] += _bell(sample_rate, f)
    out = _fade(out, sample_rate, 0.01)
    return out * (0.5 / np.abs(out).max())
