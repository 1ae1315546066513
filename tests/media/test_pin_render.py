"""Pins of passes 2 and 3 (render): a composite of prepared inputs, gaps and gains comes out at -16 LUFS with its
true peak at most -1.5 dBTP, measured by ffmpeg's own meter, in MP3 or Opus, with the timeline it was given.

Short synthetic signals (numpy tones and noise of one to three seconds) through the real pass 1, the real
limiter, the real encoders and the real meter.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from media import MediaConfig
from media.analyze import Prepared
from media.errors import MediaError
from media.intake import analyze_samples
from media.render import Rendered, Segment, _UnitPeaks, _waveform, render, silence, whole
from tests.audio import read_wav_mono
from tests.meter import measure

from .conftest import stream_info

SR = 24000
TARGET_LUFS = -16.0
CEILING_DBTP = -1.5
FORMATS = ("mp3", "opus")


def _tone(seconds: float, amplitude: float, hz: float = 1000.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)


def _speechy(seconds: float, seed: int = 5) -> np.ndarray:
    """Noise under a jumping 10 ms envelope: a crest factor like speech, so the limiter has work to do."""
    rng = np.random.default_rng(seed)
    units = round(seconds * 100)
    return rng.normal(0, 1, units * 240) * np.repeat(np.abs(rng.normal(0, 0.1, units)), 240)


def _peaky(seconds: float, sigma: float, seed: int) -> np.ndarray:
    """Noise under a log-normal 10 ms envelope, peak 0.1: quiet and very peaky (a loud voice far from the mic)."""
    rng = np.random.default_rng(seed)
    units = round(seconds * 100)
    x = rng.normal(0, 1, units * 240) * np.repeat(np.exp(rng.normal(0, sigma, units)), 240)
    return 0.1 * x / np.abs(x).max()


def _clicky() -> np.ndarray:
    """Soft noise with a loud 1 ms click every 125 ms."""
    x = np.random.default_rng(5).normal(0, 0.05, 3 * SR)
    for i, k in enumerate(range(0, x.size - 24, SR // 8)):
        x[k : k + 24] += 0.9 * np.hanning(24) * (1 if i % 2 else -1)
    return x


def _attempt(message: str) -> tuple[float, float, float, float]:
    """(gain, ceiling, LUFS, dBTP) of one "render attempt" debug line."""
    found = re.search(r"gain (-?[\d.]+) dB ceiling (-?[\d.]+) -> (-?[\d.]+) LUFS (-?[\d.]+) dBTP", message)
    assert found, message
    return float(found[1]), float(found[2]), float(found[3]), float(found[4])


def _prepare(tmp_path: Path, x: np.ndarray, name: str, config: MediaConfig) -> Prepared:
    return analyze_samples(x, SR, tmp_path, name, config)


def _render(
    segments: list[Segment], config: MediaConfig, out: Path, caplog: pytest.LogCaptureFixture
) -> tuple[Rendered, int]:
    """Render, and count the encodes it took (one debug line per attempt)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="media.render"):
        rendered = render(segments, config, out)
    attempts = [r for r in caplog.records if r.name == "media.render" and r.getMessage().startswith("render attempt")]
    return rendered, len(attempts)


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(x**2)) + 1e-20)


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_quiet_tone_comes_out_at_minus_16_in_one_encode(
    fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A steady dual tone at -30 LUFS is raised to -16 LUFS (the meter agrees), encoded once, with no warning."""
    config = MediaConfig(output_format=fmt)
    x = _tone(2.0, 0.0318, 853) + _tone(2.0, 0.0318, 960)
    prepared = _prepare(tmp_path, x, "tone", config)
    assert prepared.loudness == pytest.approx(-30.0, abs=0.5)
    out = tmp_path / f"out.{fmt}"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    reading = measure(out)  # ffmpeg's own meter on the stored file
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert reading.true_peak <= CEILING_DBTP, reading
    assert rendered.measured.integrated == pytest.approx(reading.integrated, abs=0.15)
    assert rendered.measured.true_peak == pytest.approx(reading.true_peak, abs=0.15)
    assert rendered.measured.duration_s == pytest.approx(2.0, abs=0.01)
    assert rendered.warnings == []
    assert attempts == 1
    # the overall gain is the level change from the input to the output (the encoder takes up to 0.5 LU)
    assert rendered.gain_db == pytest.approx(reading.integrated - prepared.loudness, abs=0.5)
    assert stream_info(out)[0] == {"mp3": SR, "opus": 48000}[fmt]  # Opus always decodes at 48 kHz


@pytest.mark.parametrize("fmt", FORMATS)
def test_peaks_are_limited_under_the_true_peak_ceiling_and_the_loudness_still_reached(
    fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Speech-like peaks that the gain would push over 0 dBFS are limited to -1.5 dBTP; -16 LUFS still, one encode."""
    config = MediaConfig(output_format=fmt)
    prepared = _prepare(tmp_path, _speechy(2.0), "speechy", config)
    out = tmp_path / f"out.{fmt}"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    reading = measure(out)
    assert prepared.peak_db + rendered.gain_db > 0.0  # unlimited, the peaks would clip
    assert reading.true_peak <= CEILING_DBTP, reading
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert rendered.warnings == []
    assert attempts == 1  # the limiter's effect on loudness was predicted before encoding


def test_a_miss_of_the_first_encode_is_corrected_by_a_second(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """White noise loses over 1 LU in Opus at 64 kbit/s; the first encode misses, the second lands within 0.4 LU."""
    config = MediaConfig(output_format="opus")
    noise = np.random.default_rng(5).normal(0, 0.1, 3 * SR)
    prepared = _prepare(tmp_path, noise, "noise", config)
    out = tmp_path / "out.opus"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    first = re.search(r"-> (-?[\d.]+) LUFS", caplog.messages[0])
    assert first
    assert float(first[1]) < TARGET_LUFS - 0.5  # the first encode really missed
    assert attempts == 2
    reading = measure(out)
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert reading.true_peak <= CEILING_DBTP
    assert rendered.warnings == []


def test_the_gain_never_passes_max_gain_and_the_miss_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Capped at max_gain_db, a quiet input stays under the target: four encodes, then media.loudness_off_target."""
    config = MediaConfig(max_gain_db=10.0)
    prepared = _prepare(tmp_path, _tone(2.0, 0.01), "quiet", config)  # about -43 LUFS
    out = tmp_path / "out.mp3"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    assert rendered.gain_db == 10.0
    assert measure(out).integrated == pytest.approx(prepared.loudness + 10.0, abs=0.5)
    assert rendered.warnings == ["media.loudness_off_target"]
    assert attempts == 4
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "media.render"]
    assert len(warned) == 1
    m = rendered.measured
    assert warned[0].getMessage() == (
        f"loudness target missed: {m.integrated:.1f} LUFS {m.true_peak:.1f} dBTP (target -16.0 / -1.5)"
    )


def test_a_miss_within_the_tolerance_is_no_warning_but_a_wider_one_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning compares the measured loudness with the target within loudness_tolerance_lu."""
    prepared = _prepare(tmp_path, _tone(2.0, 0.01), "quiet", MediaConfig())
    gain_needed = TARGET_LUFS + 0.45 - prepared.loudness  # MP3 takes about 0.45 LU of a tone
    short = replace(MediaConfig(), max_gain_db=gain_needed - 1.0, loudness_tolerance_lu=1.5)
    rendered, _ = _render([whole(prepared)], short, tmp_path / "out.mp3", caplog)
    assert TARGET_LUFS - 1.5 < rendered.measured.integrated < TARGET_LUFS - 0.5
    assert rendered.warnings == []
    tight = replace(short, loudness_tolerance_lu=0.5)
    assert _render([whole(prepared)], tight, tmp_path / "out.mp3", caplog)[0].warnings == ["media.loudness_off_target"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_composite_keeps_its_timeline_its_relative_levels_and_silent_gaps(
    fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Segments play in order at their own gains, gaps are digital silence, and the whole is normalized as one."""
    config = MediaConfig(output_format=fmt)
    a = _prepare(tmp_path, _tone(1.0, 0.1, 500), "a", config)
    b = _prepare(tmp_path, _tone(1.0, 0.1, 2000), "b", config)
    parts = [whole(a, 12.0), silence(1.25), whole(b, 6.0), silence(0.25), whole(a)]
    assert sum(p.units for p in parts) == 450
    out = tmp_path / f"out.{fmt}"
    rendered, attempts = _render(parts, config, out, caplog)
    assert attempts == 1  # the composite's loudness was predicted with every segment at its gain
    assert rendered.measured.duration_s == pytest.approx(4.5, abs=0.01)
    y = read_wav_mono(out, SR)
    first, second, third = y[int(0.1 * SR) : int(0.9 * SR)], y[int(2.35 * SR) : int(3.15 * SR)], y[int(3.6 * SR) :]
    third = third[: int(0.8 * SR)]
    assert _dominant_hz(first) == pytest.approx(500, abs=5)
    assert _dominant_hz(second) == pytest.approx(2000, abs=5)
    assert _dominant_hz(third) == pytest.approx(500, abs=5)
    assert _rms_db(first) - _rms_db(second) == pytest.approx(6.0, abs=0.5)
    assert _rms_db(first) - _rms_db(third) == pytest.approx(12.0, abs=0.5)
    assert _rms_db(y[int(1.1 * SR) : int(2.15 * SR)]) < -60  # the gaps
    assert _rms_db(y[int(3.35 * SR) : int(3.45 * SR)]) < -60
    assert abs(measure(out).integrated - TARGET_LUFS) <= 0.5


def test_a_segment_plays_exactly_its_range_of_units(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Segment(prepared, 50, 250) plays input units 50-249 and nothing more: the gap after it is silent."""
    config = MediaConfig()
    t = np.arange(3 * SR) / SR
    hz = np.where((t >= 1.0) & (t < 2.0), 2000, 500)
    prepared = _prepare(tmp_path, 0.3 * np.sin(2 * np.pi * hz * t), "three", config)
    out = tmp_path / "out.mp3"
    _render([Segment(prepared, 50, 250), silence(0.5)], config, out, caplog)
    y = read_wav_mono(out, SR)
    assert y.size == int(2.5 * SR)
    # the input's changes at 1 s and 2 s are heard at 0.5 s and 1.5 s
    assert _dominant_hz(y[int(0.40 * SR) : int(0.48 * SR)]) == pytest.approx(500, abs=15)
    assert _dominant_hz(y[int(0.52 * SR) : int(0.60 * SR)]) == pytest.approx(2000, abs=15)
    assert _dominant_hz(y[int(1.40 * SR) : int(1.48 * SR)]) == pytest.approx(2000, abs=15)
    assert _dominant_hz(y[int(1.52 * SR) : int(1.60 * SR)]) == pytest.approx(500, abs=15)
    assert _rms_db(y[int(2.05 * SR) :]) < -60


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_last_partial_unit_is_completed_with_silence(
    fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An input of 1.005 s is 101 units: two copies last exactly 2.02 s, the second starting at 1.01 s sharp."""
    config = MediaConfig(output_format=fmt)
    noise = np.random.default_rng(8).normal(0, 0.1, 24120)
    prepared = _prepare(tmp_path, noise, "short", config)
    assert (prepared.start_unit, prepared.end_unit) == (0, 101)
    out = tmp_path / f"out.{fmt}"
    rendered, _ = _render([whole(prepared), whole(prepared)], config, out, caplog)
    assert rendered.measured.duration_s == pytest.approx(2.02, abs=1e-6)
    y = read_wav_mono(out, SR)
    assert y.size == 202 * 240
    assert len(rendered.waveform) == 200
    first, second = y[240:24000], y[24240 + 240 : 24240 + 24000]
    assert np.corrcoef(first, second)[0, 1] > 0.9  # the same noise, sample for sample


def test_another_output_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At 16 kHz the units are 160 samples: durations, gaps and levels follow."""
    config = MediaConfig(sample_rate=16000, output_format="opus")
    tone = analyze_samples(_tone(1.0, 0.1), SR, tmp_path, "tone", config)
    out = tmp_path / "out.opus"
    rendered, attempts = _render([whole(tone), silence(0.5), whole(tone)], config, out, caplog)
    assert stream_info(out)[0] == 48000  # Opus always decodes at 48 kHz
    assert rendered.measured.duration_s == pytest.approx(2.5, abs=0.01)
    assert abs(measure(out).integrated - TARGET_LUFS) <= 0.4
    assert attempts == 1


def test_mp3_output_is_plain_cbr_mpeg_audio_at_the_configured_bitrate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MP3: no ID3 tag, MPEG-2 layer III frames at 24 kHz, bitrate_kbps respected, the same bytes every time."""
    config = MediaConfig()
    prepared = _prepare(tmp_path, _speechy(2.0), "speechy", config)
    out, again = tmp_path / "out.mp3", tmp_path / "again.mp3"
    _render([whole(prepared)], config, out, caplog)
    _render([whole(prepared)], config, again, caplog)
    data = out.read_bytes()
    assert data == again.read_bytes()  # stored by content hash: the same input gives the same file
    assert not data.startswith(b"ID3")
    assert data[0] == 0xFF
    assert data[1] & 0xE0 == 0xE0  # frame sync
    assert (data[1] >> 3) & 0x3 == 0b10  # MPEG-2 (the 24 kHz family)
    assert (data[1] >> 1) & 0x3 == 0b01  # layer III
    assert len(data) == pytest.approx(64000 / 8 * 2.0, rel=0.1)
    low = tmp_path / "low.mp3"
    _render([whole(prepared)], replace(config, bitrate_kbps=32), low, caplog)
    assert low.stat().st_size == pytest.approx(32000 / 8 * 2.0, rel=0.1)


def test_opus_output_is_ogg_opus_at_the_configured_bitrate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Opus: an Ogg stream with an OpusHead, about bitrate_kbps, the same bytes every time."""
    config = MediaConfig(output_format="opus")
    prepared = _prepare(tmp_path, _speechy(2.0), "speechy", config)
    out, again = tmp_path / "out.opus", tmp_path / "again.opus"
    _render([whole(prepared)], config, out, caplog)
    _render([whole(prepared)], config, again, caplog)
    data = out.read_bytes()
    assert data == again.read_bytes()
    assert data.startswith(b"OggS")
    assert b"OpusHead" in data[:100]
    assert 0.75 < len(data) / (64000 / 8 * 2.0) < 1.5
    low = tmp_path / "low.opus"
    _render([whole(prepared)], replace(config, bitrate_kbps=24), low, caplog)
    assert 0.75 < low.stat().st_size / (24000 / 8 * 2.0) < 1.5
    assert stream_info(out)[1] == "mono"


def test_the_waveform_follows_the_output_peaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """200 points evenly over the time, each the 0..1 peak of its stretch: the gap reads 0, the sound its peak."""
    config = MediaConfig()
    tone = _prepare(tmp_path, _tone(1.0, 0.1), "tone", config)
    rendered, _ = _render([whole(tone), silence(1.0), whole(tone)], config, tmp_path / "out.mp3", caplog)
    wave = rendered.waveform
    assert len(wave) == 200
    peak = 10 ** ((TARGET_LUFS + 0.45 + 3.01) / 20)  # a 1 kHz sine at -15.55 LUFS before the encoder
    # each second of the three is a third of the points
    assert wave[2:66] == pytest.approx([peak] * 64, abs=0.02)
    assert wave[67:133] == [0.0] * 66
    assert wave[134:200] == pytest.approx([peak] * 66, abs=0.02)


def test_waveform_points_are_bin_peaks_clamped_and_rounded() -> None:
    """Each point is the maximum of an even share of the unit peaks, at most 1.0, rounded to 3 decimals."""
    assert _waveform(np.zeros(0)) == []
    assert _waveform(np.array([0.3])) == [0.3]
    assert _waveform(np.array([0.5, 1.7, 0.25, 0.12345])) == [0.5, 1.0, 0.25, 0.123]
    assert _waveform(np.array([0.5, 1.7, 0.25, 0.12345]), points=2) == [1.0, 0.25]
    ramp = np.arange(450) / 1000
    wave = _waveform(ramp)
    assert len(wave) == 200
    # 2.25 units a point: the bins hold 2, 2, 2, 3, 2, 2, 2, 3, ... units
    assert wave[:5] == [0.001, 0.003, 0.005, 0.008, 0.010]
    assert wave[-1] == 0.449
    ends = np.flatnonzero(np.isin(ramp, np.array(wave)))  # the last unit of every bin
    assert set(np.diff(ends).tolist()) == {2, 3}


def test_unit_peaks_take_samples_in_any_lengths() -> None:
    """Peaks of a stream fed in odd lengths equal those of the whole, of either sign; a last partial unit counts."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 0.3, 3 * 240 + 17).astype(np.float32)
    x[250] = -0.99  # the largest magnitude of unit 1 is negative
    acc = _UnitPeaks(240)
    for lo, hi in ((0, 5), (5, 5), (5, 500), (500, 501), (501, x.size)):
        acc.add(x[lo:hi])
    expected = [np.abs(x[i : i + 240]).max() for i in range(0, x.size, 240)]
    np.testing.assert_array_equal(acc.result(), np.array(expected, dtype=np.float32))
    assert acc.result()[1] == np.float32(0.99)
    assert _UnitPeaks(240).result().size == 0


def test_silence_and_whole_segments() -> None:
    """silence(s) is s rounded to 10 ms units, never negative; whole() is a prepared input's trimmed range."""
    assert silence(1.234) == Segment(None, 0, 123)
    assert silence(0.016).units == 2
    assert silence(0.0).units == 0
    assert silence(-1.0).units == 0
    fake = Prepared(
        raw_path=Path("unused"),
        sample_rate=SR,
        unit_energy=np.zeros(300),
        unit_peak=np.zeros(300),
        block_peak=np.zeros((300, 10), dtype=np.float32),
        clipped_fraction=0.0,
        start_unit=20,
        end_unit=250,
        loudness=-20.0,
    )
    seg = whole(fake, -3.0)
    assert (seg.prepared, seg.start_unit, seg.end_unit, seg.gain_db, seg.units) == (fake, 20, 250, -3.0, 230)
    assert whole(fake).gain_db == 0.0


def test_an_encoder_failure_is_a_media_error(tmp_path: Path) -> None:
    """When ffmpeg cannot write the output, render raises media.ffmpeg_failed (an outage, not the input's fault)."""
    config = MediaConfig()
    prepared = _prepare(tmp_path, _tone(1.0, 0.1), "tone", config)
    with pytest.raises(MediaError) as err:
        render([whole(prepared)], config, tmp_path / "missing" / "out.mp3")
    assert err.value.code == "media.ffmpeg_failed"
    assert err.value.kind == "unavailable"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_quiet_very_peaky_input_is_limited_hard_and_still_lands_in_one_encode(
    fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Peaks 5 dB and more over the ceiling at the needed gain: the limiter's loudness loss is solved for in advance."""
    config = MediaConfig(output_format=fmt)
    prepared = _prepare(tmp_path, _peaky(2.0, 0.8, 1), "peaky", config)
    assert prepared.loudness < -35
    out = tmp_path / f"out.{fmt}"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    assert prepared.peak_db + rendered.gain_db > CEILING_DBTP + 5.0  # what the limiter had to take off
    reading = measure(out)
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert reading.true_peak <= CEILING_DBTP, reading
    assert attempts == 1
    assert rendered.warnings == []


def test_a_true_peak_over_the_ceiling_after_encoding_lowers_the_limiter_and_encodes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The encoder can push a peak over -1.5 dBTP; the next encode limits lower by the overshoot plus 0.2 dB."""
    config = MediaConfig()
    prepared = _prepare(tmp_path, _peaky(2.0, 1.2, 2), "peaky", config)
    out = tmp_path / "out.mp3"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    assert attempts == 2
    _, ceiling1, lufs1, peak1 = _attempt(caplog.messages[0])
    _, ceiling2, _, _ = _attempt(caplog.messages[1])
    assert abs(lufs1 - TARGET_LUFS) <= 0.4  # the loudness was right: only the peak was over
    assert peak1 > CEILING_DBTP
    assert ceiling1 == CEILING_DBTP - 0.5  # MP3's head-room under the ceiling
    assert ceiling2 == pytest.approx(ceiling1 - (peak1 - CEILING_DBTP) - 0.2, abs=0.006)
    reading = measure(out)
    assert reading.true_peak <= CEILING_DBTP, reading
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert rendered.warnings == []


def test_a_true_peak_exactly_at_the_ceiling_is_within_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """-1.5 dBTP measured is not over -1.5 dBTP: no second encode and no warning."""
    config = MediaConfig()
    prepared = _prepare(tmp_path, _clicky(), "clicky", config)
    rendered, attempts = _render([whole(prepared)], config, tmp_path / "out.mp3", caplog)
    assert rendered.measured.true_peak == CEILING_DBTP
    assert abs(rendered.measured.integrated - TARGET_LUFS) <= 0.4
    assert attempts == 1
    assert rendered.warnings == []


def test_a_miss_of_the_loudness_with_the_limiter_at_work_is_corrected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Limited clicks lose more in MP3 than foreseen: the second encode aims the prediction higher by the miss."""
    x = np.diff(np.random.default_rng(5).normal(0, 0.05, 3 * SR + 1))
    for i, k in enumerate(range(0, x.size - 6, SR // 8)):
        x[k : k + 6] += 0.9 * np.hanning(6) * (1 if i % 2 else -1)
    config = MediaConfig()
    prepared = _prepare(tmp_path, x, "hf", config)
    out = tmp_path / "out.mp3"
    _, attempts = _render([whole(prepared)], config, out, caplog)
    gain1, _, lufs1, _ = _attempt(caplog.messages[0])
    assert prepared.peak_db + gain1 > CEILING_DBTP  # the limiter is at work
    assert lufs1 < TARGET_LUFS - 0.4
    assert attempts == 2
    reading = measure(out)
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert reading.true_peak <= CEILING_DBTP


def test_a_limited_composite_with_gains_and_gaps_is_predicted_as_a_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A soft tone, a 10.5 s gap, a peaky segment raised by its own gain: the first encode lands at -16 LUFS."""
    config = MediaConfig()
    tone = _prepare(tmp_path, _tone(1.0, 0.01), "tone", config)
    lead = np.concatenate((np.zeros(SR // 2), _peaky(2.0, 0.8, 1)))  # digital silence before the sound
    peaky = _prepare(tmp_path, lead, "peaky", config)
    assert peaky.start_unit > 0
    assert not peaky.block_peak[peaky.start_unit].any()  # the kept lead-in is exact zeros
    parts = [whole(tone), silence(10.5), whole(peaky, 6.0)]
    out = tmp_path / "out.mp3"
    rendered, _ = _render(parts, config, out, caplog)
    assert peaky.peak_db + 6.0 + rendered.gain_db > CEILING_DBTP + 3.0  # the limiter works on the last segment
    assert abs(_attempt(caplog.messages[0])[2] - TARGET_LUFS) <= 0.4  # the first encode's loudness was right
    reading = measure(out)
    assert abs(reading.integrated - TARGET_LUFS) <= 0.4, reading
    assert reading.true_peak <= CEILING_DBTP
    y = read_wav_mono(out, SR)
    assert _rms_db(y[int(1.1 * SR) : int(11.4 * SR)]) < -60


def test_peaks_lifted_just_over_the_ceiling_are_predicted_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A pulse train whose sample peaks the gain lifts within 1 dB of the limiter's ceiling: still one encode."""
    t = np.arange(2 * SR) / SR
    pulses = sum(np.cos(2 * np.pi * k * 100 * t) for k in range(1, 13))
    config = MediaConfig()
    prepared = _prepare(tmp_path, 0.1 * pulses / np.abs(pulses).max(), "pulses", config)
    out = tmp_path / "out.mp3"
    rendered, attempts = _render([whole(prepared)], config, out, caplog)
    assert abs(prepared.peak_db + rendered.gain_db - (CEILING_DBTP - 0.5)) < 1.0
    assert abs(measure(out).integrated - TARGET_LUFS) <= 0.4
    assert attempts == 1


def test_a_composite_without_sound_renders_silence_flagged_off_target(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only gaps, or nothing at all: a silent (or empty) file, the waveform flat, media.loudness_off_target."""
    rendered, _ = _render([silence(1.0)], MediaConfig(), tmp_path / "gap.mp3", caplog)
    assert rendered.measured.duration_s == pytest.approx(1.0, abs=1e-6)
    assert rendered.waveform == [0.0] * 100
    assert rendered.warnings == ["media.loudness_off_target"]
    assert rendered.gain_db == 45.0  # nothing to measure: the gain stops at max_gain_db
    empty, _ = _render([], MediaConfig(), tmp_path / "empty.mp3", caplog)
    assert empty.measured.duration_s == 0.0
    assert empty.waveform == []
    assert empty.warnings == ["media.loudness_off_target"]


def test_a_miss_exactly_at_the_tolerance_is_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The warning is for a miss over loudness_tolerance_lu, not at it."""
    config = MediaConfig(max_gain_db=10.0)
    prepared = _prepare(tmp_path, _tone(2.0, 0.01), "quiet", config)
    capped, _ = _render([whole(prepared)], config, tmp_path / "out.mp3", caplog)
    miss = abs(TARGET_LUFS - capped.measured.integrated)
    assert miss > 5
    at = replace(config, loudness_tolerance_lu=miss)
    assert _render([whole(prepared)], at, tmp_path / "out.mp3", caplog)[0].warnings == []


def test_a_true_peak_at_the_ceiling_keeps_the_ceiling_while_the_loudness_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Opus reading exactly -1.5 dBTP and 0.5 LU short: each retry raises the gain, none lowers the limiter."""
    config = MediaConfig(output_format="opus")
    prepared = _prepare(tmp_path, _peaky(2.0, 1.3, 1), "peaky", config)
    rendered, attempts = _render([whole(prepared)], config, tmp_path / "out.opus", caplog)
    tried = [_attempt(m) for m in caplog.messages if m.startswith("render attempt")]
    assert tried[0][3] == CEILING_DBTP  # at the ceiling, not over it
    assert tried[0][2] < TARGET_LUFS - 0.4  # and short of the loudness: a retry
    assert attempts > 1
    assert [ceiling for _, ceiling, _, _ in tried] == [CEILING_DBTP - 1.5] * attempts  # Opus' head-room, kept
    assert rendered.gain_db == 45.0  # the gain went up to max_gain_db
    assert rendered.measured.true_peak <= CEILING_DBTP
