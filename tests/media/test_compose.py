"""Composition: tones, chimes, repeats and gaps, measured on the decoded output's timeline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from media import MediaConfig, MediaStore, Wrap, attention_tone, chime, measure_loudness, synthesize_text
from media.tones import ATTENTION_FREQS_HZ

from .conftest import read_wav_mono

SR = 24000
TEXT = "防汛紧急通知，请沿河群众立即转移。"


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(x**2)) + 1e-20)


def band_share(x: np.ndarray, freqs: tuple[float, ...], width: float = 15.0) -> float:
    """Share of the energy of X within WIDTH Hz of the given frequencies."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    mask = np.zeros_like(f, dtype=bool)
    for freq in freqs:
        mask |= np.abs(f - freq) <= width
    return float(spectrum[mask].sum() / spectrum.sum())


def window(x: np.ndarray, start: float, end: float) -> np.ndarray:
    return x[int(start * SR) : int(end * SR)]


def test_warning_layout_tone_repeats_gaps_end_chime(store: MediaStore, config: MediaConfig) -> None:
    config = replace(config, attention_tone_s=3.0)
    plain = synthesize_text(TEXT, store, config)
    end = chime(store, config, "end")
    tone = attention_tone(store, config)
    wrap = Wrap(attention_tone=True, repeat=2, gap_s=1.5, chime_after=True)
    info = synthesize_text(TEXT, store, config, wrap=wrap)

    t, d, c, g = tone.duration_ms / 1000, plain.duration_ms / 1000, end.duration_ms / 1000, wrap.gap_s
    assert abs(t - 3.0) < 0.05
    expected = t + g + d + g + d + g + c
    assert abs(info.duration_ms / 1000 - expected) < 0.08, (info.duration_ms, expected)

    meter = measure_loudness(store.path(info.sha256))
    assert abs(meter.integrated - config.target_lufs) <= 0.5
    assert meter.true_peak <= config.true_peak_dbtp

    x = read_wav_mono(store.path(info.sha256), SR)
    # the dual tone opens the clip
    assert band_share(window(x, 0.2, t - 0.2), ATTENTION_FREQS_HZ) > 0.9
    assert rms_db(window(x, 0.2, t - 0.2)) > -25
    # every gap is silent, every repeat is speech
    marks = [t, t + g + d, t + g + d + g + d]
    for gap_start in marks:
        assert rms_db(window(x, gap_start + 0.2, gap_start + g - 0.2)) < -60, gap_start
    for speech_start in (t + g, t + g + d + g):
        assert rms_db(window(x, speech_start + 0.2, speech_start + d - 0.2)) > -35
        assert band_share(window(x, speech_start + 0.2, speech_start + d - 0.2), ATTENTION_FREQS_HZ) < 0.2
    # the end chime closes it: its first (highest) note leads
    tail = window(x, marks[-1] + g, marks[-1] + g + 0.25)
    assert band_share(tail, (1318.51, 2637.0)) > 0.5


def test_chime_before_and_single_repeat(store: MediaStore, config: MediaConfig) -> None:
    start = chime(store, config, "start")
    plain = synthesize_text(TEXT, store, config)
    info = synthesize_text(TEXT, store, config, wrap=Wrap(chime_before=True, gap_s=0.5))
    assert abs(info.duration_ms - (start.duration_ms + 500 + plain.duration_ms)) < 80
    x = read_wav_mono(store.path(info.sha256), SR)
    assert band_share(window(x, 0.0, 0.25), (659.26, 1318.5)) > 0.5  # the lowest note opens "start"


def test_tones_are_normalized_at_their_levels(store: MediaStore, config: MediaConfig) -> None:
    tone = attention_tone(store, config)
    bell = chime(store, config, "start")
    assert abs(tone.loudness_lufs - (config.target_lufs + config.tone_level_lu)) <= 0.5
    assert abs(bell.loudness_lufs - (config.target_lufs + config.chime_level_lu)) <= 0.5
    assert tone.true_peak_dbtp <= config.true_peak_dbtp
    assert bell.true_peak_dbtp <= config.true_peak_dbtp
    assert tone.source == "generated"
    assert abs(tone.duration_ms - config.attention_tone_s * 1000) < 50


def test_unknown_chime(store: MediaStore, config: MediaConfig) -> None:
    from media import MediaError

    with pytest.raises(MediaError) as caught:
        chime(store, config, "middle")
    assert caught.value.code == "media.bad_chime"


def test_wrap_limits() -> None:
    with pytest.raises(ValueError, match="repeat"):
        Wrap(repeat=0)
    with pytest.raises(ValueError, match="gap_s"):
        Wrap(gap_s=-1)
    assert Wrap().is_plain
    assert not Wrap(repeat=2).is_plain
