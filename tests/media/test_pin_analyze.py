"""Pins of pass 1 (analysis) on short synthetic signals: loudness against a reference meter, peaks,
silence and trimming thresholds, clipping, duration limits, broken input."""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from media import MediaConfig
from media.analyze import (
    BLOCKS_PER_UNIT,
    _declared_duration,
    analyze,
    block_edges,
    block_lengths,
    filter_graph,
    trim_range,
)
from media.bs1770 import max_momentary
from media.errors import MediaError
from media.runner import ffmpeg_exe
from tests.audio import ffmpeg, write_wav
from tests.meter import measure

SR = 24000
ULEN = 240


def _tone(seconds: float, amplitude: float, hz: float = 1000.0, sr: int = SR, fade: bool = False) -> np.ndarray:
    """A sine; with FADE, 20 ms raised-cosine edges (no high-pass overshoot at the onset)."""
    x = amplitude * np.sin(2 * np.pi * hz * np.arange(int(sr * seconds)) / sr)
    if fade:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(sr // 50) / (sr // 50))
        x[: edge.size] *= edge
        x[x.size - edge.size :] *= edge[::-1]
    return x


def _raw(folder: Path, x: np.ndarray, sr: int = SR) -> list[str]:
    """Input arguments for float samples X written as raw float32 mono."""
    path = folder / "in.f32"
    np.asarray(x, dtype="<f4").tofile(path)
    return ["-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", str(path)]


def _run(tmp_path: Path, x: np.ndarray, config: MediaConfig | None = None, sr: int = SR):
    return analyze(_raw(tmp_path, x, sr), tmp_path / "out.raw", config or MediaConfig())


def _code(tmp_path: Path, x: np.ndarray, config: MediaConfig | None = None) -> MediaError:
    with pytest.raises(MediaError) as err:
        _run(tmp_path, x, config)
    return err.value


def test_loudness_matches_the_reference_meter(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = _tone(3.0, 0.3, 700) + _tone(3.0, 0.1, 2500) + rng.normal(0, 0.02, 3 * SR)
    wav = write_wav(tmp_path / "ref.wav", x, SR)
    prepared = analyze(["-i", str(wav)], tmp_path / "out.raw", MediaConfig())
    reference = measure(wav)
    assert prepared.loudness == pytest.approx(reference.integrated, abs=0.3)
    assert prepared.sample_rate == SR
    assert prepared.ulen == ULEN
    assert prepared.unit_energy.shape == (300,)
    assert prepared.block_peak.shape == (300, BLOCKS_PER_UNIT)
    assert prepared.block_peak.dtype == np.float32
    # the oversampled block peaks see the true peak the meter reports (the high-pass changes it little)
    assert 20 * np.log10(prepared.block_peak.max()) == pytest.approx(reference.true_peak, abs=0.5)


def test_a_full_tone_is_kept_whole_and_spooled_high_passed(tmp_path: Path) -> None:
    x = _tone(2.0, 0.5, fade=True)
    prepared = _run(tmp_path, x)
    assert prepared.start_unit == 0
    assert prepared.end_unit == 200
    assert prepared.unit_peak.shape == (200,)
    assert prepared.peak_db == pytest.approx(20 * np.log10(0.5), abs=0.2)
    assert prepared.clipped_fraction == 0.0
    # a 1 kHz sine reads its peak level - 3.01 LUFS (BS.1770 calibrates the K-weighting there)
    assert prepared.loudness == pytest.approx(20 * np.log10(0.5) - 3.01, abs=0.1)
    spooled = np.fromfile(prepared.raw_path, dtype="<f4")
    assert spooled.size == x.size
    # 1 kHz passes the 150 Hz high-pass at its level (shifted in phase)
    assert np.sqrt(np.mean(spooled[SR // 2 : -SR // 2] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_the_high_pass_removes_rumble(tmp_path: Path) -> None:
    x = _tone(2.0, 0.5, fade=True) + _tone(2.0, 0.5, hz=30, fade=True)
    prepared = _run(tmp_path, x)
    spooled = np.fromfile(prepared.raw_path, dtype="<f4")
    spectrum = np.abs(np.fft.rfft(spooled[SR // 2 : SR // 2 + SR]))  # one second: 1 Hz bins
    assert spectrum[30] < spectrum[1000] * 0.01  # 30 Hz is over two octaves under the 150 Hz corner
    assert prepared.peak_db < 20 * np.log10(0.6)


def test_silence_around_the_sound_is_trimmed_with_padding(tmp_path: Path) -> None:
    x = np.concatenate((np.zeros(SR), _tone(1.0, 0.5, fade=True), np.zeros(SR)))
    prepared = _run(tmp_path, x)
    # the sound spans units 100-199 (the 3-unit smoothing reaches one unit out); 150 ms of pad each side
    assert prepared.start_unit in range(83, 86)
    assert prepared.end_unit in range(215, 219)
    # measured over the kept range: the fades and pads that pass the gates lower it a little
    assert prepared.loudness == pytest.approx(20 * np.log10(0.5) - 3.01, abs=0.6)
    assert prepared.peak_db == pytest.approx(20 * np.log10(0.5), abs=0.2)


def test_all_zero_input_is_silent_without_a_level(tmp_path: Path) -> None:
    err = _code(tmp_path, np.zeros(2 * SR))
    assert err.code == "media.silent"
    assert err.details["loudest_momentary_lufs"] is None


def test_a_whisper_under_the_silence_level_is_silent(tmp_path: Path) -> None:
    err = _code(tmp_path, _tone(2.0, 0.002))  # -57 LUFS
    assert err.code == "media.silent"
    assert err.details["loudest_momentary_lufs"] == pytest.approx(-57.0, abs=0.2)
    # and a little louder than the silence level passes
    assert _run(tmp_path, _tone(2.0, 0.006)).loudness == pytest.approx(-47.45, abs=0.2)


def test_the_silence_level_is_configurable(tmp_path: Path) -> None:
    config = replace(MediaConfig(), silence_lufs=-40.0)
    assert _code(tmp_path, _tone(2.0, 0.006), config).code == "media.silent"


def test_too_little_sound_is_too_short(tmp_path: Path) -> None:
    x = np.concatenate((np.zeros(SR), _tone(0.3, 0.5, fade=True), np.zeros(SR)))
    err = _code(tmp_path, x)
    assert err.code == "media.too_short"
    sound_s = err.details["duration_s"]
    assert sound_s == pytest.approx(0.3, abs=0.05)
    # a minimum of exactly the measured sound is enough
    ok = _run(tmp_path, x, replace(MediaConfig(), min_duration_s=sound_s))
    assert ok.end_unit - ok.start_unit == pytest.approx(sound_s * 100 + 30, abs=0.5)


def test_over_the_duration_limit_is_too_long(tmp_path: Path) -> None:
    config = replace(MediaConfig(), max_duration_s=1.5)
    err = _code(tmp_path, _tone(1.6, 0.5), config)
    assert err.code == "media.too_long"
    assert _run(tmp_path, _tone(1.5, 0.5), config).end_unit == 150  # the limit itself is allowed


def test_garbage_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp3"
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(MediaError) as err:
        analyze(["-f", "mp3", "-i", str(path)], tmp_path / "out.raw", MediaConfig())
    assert err.value.code == "media.corrupt"


def test_empty_input_is_corrupt(tmp_path: Path) -> None:
    assert _code(tmp_path, np.zeros(0)).code == "media.corrupt"


def test_a_wav_cut_mid_sample_short_of_its_declared_length_is_corrupt(tmp_path: Path) -> None:
    """A cut between two bytes of a sample fails the declared-length check (a cut between samples: intake's)."""
    wav = write_wav(tmp_path / "long.wav", _tone(4.0, 0.5), SR)
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])  # the header still declares 4 s
    with pytest.raises(MediaError) as err:
        analyze(["-f", "wav", "-i", str(cut)], tmp_path / "out.raw", MediaConfig())
    assert err.value.code == "media.corrupt"
    # a whole file is fine
    assert analyze(["-i", str(wav)], tmp_path / "out.raw", MediaConfig()).end_unit == 400


def test_near_full_scale_samples_count_as_clipping(tmp_path: Path) -> None:
    x = np.clip(_tone(2.0, 2.0), -0.95, 0.95)  # a hard-clipped sine
    prepared = _run(tmp_path, x)
    level = np.abs(x)
    expected = np.count_nonzero(level >= 0.9) / np.count_nonzero(level > 0.01)
    assert prepared.clipped_fraction == pytest.approx(expected, rel=1e-9)  # of the samples as decoded
    assert prepared.clipped_fraction > 0.5
    # at 0.89 nothing counts
    assert _run(tmp_path, _tone(2.0, 0.89)).clipped_fraction == 0.0


def test_another_output_rate(tmp_path: Path) -> None:
    config = replace(MediaConfig(), sample_rate=16000)
    prepared = analyze(_raw(tmp_path, _tone(2.0, 0.5, sr=SR)), tmp_path / "out.raw", config)
    assert prepared.sample_rate == 16000
    assert prepared.ulen == 160
    assert np.fromfile(prepared.raw_path, dtype="<f4").size == 32000
    assert prepared.block_peak.shape == (200, BLOCKS_PER_UNIT)
    assert "aresample=16000" in filter_graph(config)


def test_peak_of_an_empty_range_is_minus_infinity(tmp_path: Path) -> None:
    prepared = _run(tmp_path, _tone(2.0, 0.5))
    assert replace(prepared, start_unit=5, end_unit=5).peak_db == -np.inf


def test_trim_range_threshold_is_depth_below_the_loudest() -> None:
    ulen = ULEN
    level_db = np.full(100, -200.0)
    level_db[40:60] = -10.0
    level_db[20:30] = -45.0  # 35 dB under the loudest: sound
    level_db[70:80] = -50.5  # 40.5 dB under: silence
    energy = 10 ** ((level_db + 0.691) / 10) * ulen
    config = MediaConfig()
    start, end, sound = trim_range(energy, ulen, -10.0, config)
    assert (start, end, sound) == (19 - 15, 60 + 1 + 15, 60 + 1 - 19)
    deeper = replace(config, trim_depth_db=50.0)
    assert trim_range(energy, ulen, -10.0, deeper) == (4, 81 + 15, 81 - 19)
    nopad = replace(config, trim_pad_s=0.0)
    assert trim_range(energy, ulen, -10.0, nopad) == (19, 61, 42)


def test_trim_range_never_keeps_sound_under_minus_70() -> None:
    level_db = np.full(100, -200.0)
    level_db[40:60] = -60.0
    level_db[10:20] = -70.5  # under the -70 floor
    energy = 10 ** ((level_db + 0.691) / 10) * ULEN
    config = replace(MediaConfig(), trim_pad_s=0.0)
    assert trim_range(energy, ULEN, -60.0, config) == (39, 61, 22)


def test_trim_range_with_nothing_sounding_keeps_everything() -> None:
    assert trim_range(np.zeros(50), ULEN, -30.0, MediaConfig()) == (0, 50, 0)


def test_trim_range_pads_only_within_the_signal() -> None:
    energy = np.full(30, 0.1 * ULEN)
    assert trim_range(energy, ULEN, -10.7, MediaConfig()) == (0, 30, 30)


def test_block_lengths_split_a_unit_in_ten() -> None:
    np.testing.assert_array_equal(block_lengths(240), [24] * 10)
    lengths = block_lengths(441)
    assert lengths.sum() == 441
    assert set(lengths.tolist()) == {44, 45}
    np.testing.assert_array_equal(block_edges(240), np.arange(0, 240, 24))
    assert block_edges(441)[0] == 0
    assert len(block_edges(441)) == BLOCKS_PER_UNIT


def test_trim_range_counts_a_level_exactly_at_the_threshold_as_sound() -> None:
    energy = np.full(20, 0.75)
    with np.errstate(divide="ignore"):
        level = float(-0.691 + 10 * np.log10(np.convolve(energy, np.ones(3) / 3, mode="same") / ULEN)[5])
    config = replace(MediaConfig(), trim_depth_db=0.0, trim_pad_s=0.0)
    # the interior units are exactly at the threshold; the two edge units (smoothed with nothing) are under it
    assert trim_range(energy, ULEN, level, config) == (1, 19, 18)


def test_trim_range_pads_by_whole_units_of_trim_pad() -> None:
    energy = np.zeros(300)
    energy[150:160] = 0.1 * ULEN
    config = replace(MediaConfig(), trim_pad_s=1.0)
    assert trim_range(energy, ULEN, -10.7, config) == (49, 161 + 100, 12)


def test_an_endless_stream_is_stopped_at_the_duration_limit(tmp_path: Path) -> None:
    config = replace(MediaConfig(), max_duration_s=1.0)
    with pytest.raises(MediaError) as err:
        analyze(["-f", "lavfi", "-i", "sine=frequency=1000"], tmp_path / "out.raw", config)
    assert err.value.code == "media.too_long"


def test_an_mp3_cut_short_of_its_declared_duration_is_corrupt(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav", _tone(61.0, 0.5, sr=8000), 8000)
    mp3 = tmp_path / "tone.mp3"
    ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-b:a", "16k", str(mp3))
    data = mp3.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: int(len(data) * 0.9)])  # decodes cleanly, but 55 s of the 61 s declared
    with pytest.raises(MediaError) as err:
        analyze(["-i", str(cut)], tmp_path / "out.raw", MediaConfig())
    assert err.value.code == "media.corrupt"
    assert "declared" in str(err.value.details["detail"])


def test_declared_duration_reads_hours_minutes_and_seconds() -> None:
    assert _declared_duration("  Duration: 01:02:03.50, start: 0") == 3723.5
    assert _declared_duration("  Duration: N/A, bitrate: N/A") is None


def test_unit_peak_is_each_units_peak_of_either_polarity(tmp_path: Path) -> None:
    """unit_peak holds, per 10 ms unit, the largest magnitude of the spooled (high-passed) samples, + or -."""
    theta = 2 * np.pi * 1000 * np.arange(2 * SR) / SR
    lopsided = np.sin(theta) + 0.5 * np.cos(2 * theta)  # peaks near +0.75 and -1.5
    level = np.where(np.arange(2 * SR) < SR // 2, 0.05, 0.4)  # quiet, then loud, inside the first second
    prepared = _run(tmp_path, lopsided * level)
    spooled = np.fromfile(prepared.raw_path, dtype="<f4").reshape(-1, ULEN)
    np.testing.assert_array_equal(prepared.unit_peak, np.abs(spooled).max(axis=1))
    assert prepared.unit_peak[10:40].max() == pytest.approx(0.05 * 1.5, rel=0.1)  # the quiet part keeps its level
    assert -spooled[60:].min() > 1.2 * spooled[60:].max()  # the negative side is the peak here
    assert replace(prepared, start_unit=10, end_unit=40).peak_db == pytest.approx(20 * np.log10(0.075), abs=1.0)


def test_clipping_counts_samples_at_0_9_and_ignores_samples_at_0_01(tmp_path: Path) -> None:
    """A sample exactly at 0.9 is near full scale; one exactly at 0.01 (-40 dBFS) is not sounding."""
    square = np.where(np.arange(SR) // 12 % 2 == 0, 1.0, -1.0)  # 1 kHz, every sample at full magnitude
    x = np.concatenate((0.9 * square, 0.5 * square, 0.01 * square))
    prepared = _run(tmp_path, x)
    assert prepared.clipped_fraction == 0.5  # 24000 clipped of the 48000 sounding samples


def test_a_quiet_input_with_nothing_sounding_has_no_clipping(tmp_path: Path) -> None:
    """An input loud enough to keep but with every sample under 0.01 has a clipped fraction of 0, not a division."""
    prepared = _run(tmp_path, _tone(2.0, 0.009))  # about -44 LUFS: over the -50 silence level
    assert prepared.loudness == pytest.approx(20 * np.log10(0.009) - 3.01, abs=0.2)
    assert prepared.clipped_fraction == 0.0


def test_a_loudest_level_exactly_at_the_silence_level_is_silent(tmp_path: Path) -> None:
    """The loudest momentary level must be above silence_lufs; at it exactly the input is silent."""
    x = _tone(2.0, 0.006)
    loudest = max_momentary(_run(tmp_path, x).unit_energy, ULEN)
    err = _code(tmp_path, x, replace(MediaConfig(), silence_lufs=loudest))
    assert err.code == "media.silent"
    assert err.details["limit_lufs"] == loudest


def test_a_declared_length_is_trusted_to_2_percent_and_0_3_seconds(tmp_path: Path) -> None:
    """Decoding declared x 0.98 - 0.3 s is enough; less is a truncated file (here a FLAC whose header says more)."""
    wav = write_wav(tmp_path / "tone.wav", _tone(3.62, 0.5), SR)
    flac = tmp_path / "tone.flac"
    ffmpeg("-i", str(wav), "-c:a", "flac", str(flac))

    def declaring(samples: int) -> list[str]:
        data = bytearray(flac.read_bytes())
        assert data[:4] == b"fLaC"
        # STREAMINFO: the low 36 bits of bytes 18-25 are the stream's total sample count
        field = int.from_bytes(data[18:26], "big")
        data[18:26] = (field & ~((1 << 36) - 1) | samples).to_bytes(8, "big")
        path = tmp_path / f"declares-{samples}.flac"
        path.write_bytes(bytes(data))
        return ["-i", str(path)]

    assert analyze(declaring(86880), tmp_path / "out.raw", MediaConfig()).end_unit == 362  # the whole file
    # declared 4.00 s: 4.00 x 0.98 - 0.3 = 3.62 s, exactly what decodes
    assert analyze(declaring(96000), tmp_path / "out.raw", MediaConfig()).end_unit == 362
    with pytest.raises(MediaError) as err:  # declared 4.01 s: 3.6298 s needed
        analyze(declaring(96240), tmp_path / "out.raw", MediaConfig())
    assert err.value.code == "media.corrupt"
    assert err.value.details["detail"] == "decoded 3.62 s of 4.01 s declared"
    with pytest.raises(MediaError):  # declared 5.00 s: 4.6 s needed
        analyze(declaring(120000), tmp_path / "out.raw", MediaConfig())


def test_a_duration_estimated_from_the_bitrate_is_not_held_against_the_file(tmp_path: Path) -> None:
    """A VBR MP3 without a Xing header gets a length guessed from its first frames; decoding less is no fault."""
    rng = np.random.default_rng(3)
    x = np.concatenate((np.zeros(SR), rng.normal(0, 0.2, 3 * SR)))  # silence encodes small, noise large
    wav = write_wav(tmp_path / "vbr.wav", x, SR)
    mp3 = tmp_path / "vbr.mp3"
    ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-q:a", "0", "-write_xing", "0", str(mp3))
    declared = _declared_duration(_ffmpeg_stderr(mp3))
    assert declared is not None
    assert declared > 2 * 4.0  # the estimate is far over the 4 s the file holds
    prepared = analyze(["-i", str(mp3)], tmp_path / "out.raw", MediaConfig())
    assert np.fromfile(prepared.raw_path, dtype="<f4").size / SR == pytest.approx(4.0, abs=0.1)


def test_a_decoder_error_reports_only_the_error_lines(tmp_path: Path) -> None:
    """The corrupt error's detail is ffmpeg's error lines, without its info and warning chatter."""
    wav = write_wav(tmp_path / "whole.wav", _tone(4.0, 0.5), SR)
    data = wav.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) - 2 * SR + 1])  # half a sample at the end: the decoder refuses it
    stderr = _ffmpeg_stderr(cut)
    assert "[info]" in stderr
    assert "[warning]" in stderr
    with pytest.raises(MediaError) as err:
        analyze(["-f", "wav", "-i", str(cut)], tmp_path / "out.raw", MediaConfig())
    lines = err.value.details["detail"].splitlines()
    assert lines
    for line in lines:
        assert line.startswith("[")
        assert "[error]" in line or "[fatal]" in line


def test_a_decode_failure_logs_the_exit_code_and_the_last_three_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's log line names ffmpeg's exit code and its last three error lines."""
    path = tmp_path / "junk.mp3"
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    with caplog.at_level(logging.INFO, logger="media.analyze"), pytest.raises(MediaError) as err:
        analyze(["-f", "mp3", "-i", str(path)], tmp_path / "out.raw", MediaConfig())
    lines = err.value.details["detail"].splitlines()
    assert len(lines) > 3
    messages = [r.getMessage() for r in caplog.records if r.name == "media.analyze"]
    assert len(messages) == 1
    found = re.fullmatch(r"decode failed \(rc=(\d+)\): (.*)", messages[0])
    assert found
    assert int(found[1]) != 0
    assert found[2] == " | ".join(lines[-3:])


def test_nothing_decoded_says_so(tmp_path: Path) -> None:
    """An input that decodes to no samples at all is corrupt with the detail "no audio decoded"."""
    err = _code(tmp_path, np.zeros(0))
    assert err.details["detail"] == "no audio decoded"


def _ffmpeg_stderr(path: Path) -> str:
    """What ffmpeg says (level-tagged) when it decodes PATH to nothing."""
    return subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "level+info", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
