"""Passes 2 and 3: gain + true-peak limiter + encode, streamed; then measure what was stored."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analyze import BLOCKS_PER_UNIT, Prepared, block_lengths
from .bs1770 import loudness_or_momentary, unit_len
from .config import MediaConfig
from .limiter import BlockLimiter, GainComputer, cover_previous, lookahead_blocks
from .measure import Loudness, measure_stored
from .runner import FfmpegProcess, wav_stream_input

logger = logging.getLogger(__name__)

_CHUNK_UNITS = 100  # one second of audio per numpy step
_SILENCE_DB = -240.0  # level given to digital silence in the block-peak model
_PREDICT_UNITS = 1000  # the loudness prediction works on 10 s of 1 ms block peaks at a time (stays in cache)
_RELEASE_DB_S = 80.0  # the limiter's release rate
_WAVEFORM_POINTS = 200
# Accept an attempt this close to the target: the meter prints 0.1 LU steps, so 0.4 shown is < 0.45
# true, inside the +-0.5 LU promise, and a second encode is spent only on real misses.
_INNER_TOLERANCE_LU = 0.4
_MAX_ATTEMPTS = 4
# Head-room kept between the limiter ceiling and the true-peak ceiling for encoder overshoot.
_CODEC_MARGIN_DB = {"mp3": 0.5, "opus": 1.5}
# Loudness the encoder takes away at 64 kbit/s (LAME drops faint high-frequency detail, which
# K-weighting counts), measured over the benchmark corpus; the first encode aims this much higher.
_CODEC_LOSS_LU = {"mp3": 0.45, "opus": 0.2}


@dataclass(frozen=True)
class Segment:
    """A run of units [start_unit, end_unit) of a prepared input at a gain, or silence."""

    prepared: Prepared | None  # None: silence
    start_unit: int
    end_unit: int
    gain_db: float = 0.0

    @property
    def units(self) -> int:
        """Length in 10 ms units."""
        return self.end_unit - self.start_unit


def silence(seconds: float) -> Segment:
    """A silent segment of about SECONDS."""
    return Segment(None, 0, max(0, round(seconds * 100)))


def whole(prepared: Prepared, gain_db: float = 0.0) -> Segment:
    """The trimmed range of a prepared input."""
    return Segment(prepared, prepared.start_unit, prepared.end_unit, gain_db)


@dataclass
class Rendered:
    """What was measured on the encoded output file (its waveform, gain and warnings)."""

    measured: Loudness
    waveform: list[float]
    gain_db: float  # overall gain applied on top of the segment gains
    warnings: list[str] = field(default_factory=list)


def _energy(segments: list[Segment]) -> np.ndarray:
    parts = []
    for seg in segments:
        if seg.prepared is None:
            parts.append(np.zeros(seg.units))
        else:
            e = seg.prepared.unit_energy[seg.start_unit : seg.end_unit]
            parts.append(e * 10 ** (seg.gain_db / 10))
    return np.concatenate(parts) if parts else np.zeros(0)


def _chunks(segments: list[Segment], ulen: int, gain_db: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The composite in one-second float32 chunks: (samples, block peaks), every gain applied."""
    for seg in segments:
        if seg.prepared is None:
            for off in range(0, seg.units, _CHUNK_UNITS):
                units = min(_CHUNK_UNITS, seg.units - off)
                yield np.zeros(units * ulen, dtype=np.float32), np.zeros((units, BLOCKS_PER_UNIT), dtype=np.float32)
            continue
        scale = np.float32(10 ** ((seg.gain_db + gain_db) / 20))
        with seg.prepared.raw_path.open("rb") as f:
            f.seek(seg.start_unit * ulen * 4)
            for off in range(seg.start_unit, seg.end_unit, _CHUNK_UNITS):
                stop = min(seg.end_unit, off + _CHUNK_UNITS)
                want = (stop - off) * ulen
                data = np.frombuffer(f.read(want * 4), dtype="<f4") * scale
                if len(data) < want:  # the last unit runs past the end of the file
                    data = np.concatenate((data, np.zeros(want - len(data), dtype=np.float32)))
                yield data, seg.prepared.block_peak[off:stop] * scale


class _UnitPeaks:
    """Per-unit sample peaks of a stream emitted in arbitrary lengths (for the waveform)."""

    def __init__(self, ulen: int) -> None:
        self.ulen = ulen
        self._carry = np.empty(0, dtype=np.float32)
        self._parts: list[np.ndarray] = []

    def add(self, y: np.ndarray) -> None:
        """Take the next samples."""
        if len(self._carry):
            y = np.concatenate((self._carry, y))
        whole_units = len(y) // self.ulen * self.ulen
        if whole_units:
            units = y[:whole_units].reshape(-1, self.ulen)
            self._parts.append(np.maximum(units.max(axis=1), -units.min(axis=1)))
        self._carry = y[whole_units:]

    def result(self) -> np.ndarray:
        """The peak of every unit, the last one possibly partial."""
        if len(self._carry):
            self._parts.append(np.abs(self._carry).max(keepdims=True))
        return np.concatenate(self._parts) if self._parts else np.zeros(0)


def _limit_pass(
    segments: list[Segment], config: MediaConfig, gain_db: float, ceiling_db: float, sink: FfmpegProcess
) -> np.ndarray:
    """Stream the composite through gain + limiter into the encoder; return the per-unit peaks."""
    ulen = unit_len(config.sample_rate)
    limiter = BlockLimiter(block_lengths(ulen), ceiling_db, sample_rate=config.sample_rate, release_db_s=_RELEASE_DB_S)
    acc = _UnitPeaks(ulen)
    stdin = sink.proc.stdin
    assert stdin is not None
    stdin.write(wav_stream_input(config.sample_rate)[1])

    def emit(y: np.ndarray) -> None:
        if len(y):
            acc.add(y)
            stdin.write(y.astype("<f4", copy=False).data)

    for chunk, peaks in _chunks(segments, ulen, gain_db):
        emit(limiter.process(chunk, peaks)[0])
    emit(limiter.flush()[0])
    return acc.result()


def _block_db_chunks(segments: list[Segment]) -> Iterator[np.ndarray]:
    """Composite true-peak block envelope in dB (segment gains applied), 10 s at a time."""
    for seg in segments:
        for off in range(seg.start_unit, seg.end_unit, _PREDICT_UNITS):
            stop = min(seg.end_unit, off + _PREDICT_UNITS)
            if seg.prepared is None:
                yield np.full((stop - off) * BLOCKS_PER_UNIT, _SILENCE_DB)
            else:
                peaks = np.maximum(seg.prepared.block_peak[off:stop].ravel(), np.float32(10 ** (_SILENCE_DB / 20)))
                yield 20 * np.log10(peaks, dtype=np.float64) + seg.gain_db


def _predict(segments: list[Segment], energy: np.ndarray, config: MediaConfig, g: float, ceil: float) -> float:
    """Loudness after gain G and the limiter, modelled at 1 ms block rate from pass-1 peak summaries."""
    block_s = 1.0 / (100 * BLOCKS_PER_UNIT)
    gains = GainComputer(lookahead_blocks(block_s), _RELEASE_DB_S * block_s)
    carry = np.empty(0)
    parts: list[np.ndarray] = []

    def take(g_lin: np.ndarray) -> None:
        nonlocal carry
        carry = np.concatenate((carry, g_lin))
        whole = len(carry) // BLOCKS_PER_UNIT * BLOCKS_PER_UNIT
        if whole:
            units = carry[:whole].reshape(-1, BLOCKS_PER_UNIT)
            parts.append(np.einsum("ij,ij->i", units, units) / BLOCKS_PER_UNIT)
        carry = carry[whole:]

    last = 0.0
    for peak_db in _block_db_chunks(segments):
        need, last = cover_previous(np.minimum(0.0, (ceil - g) - peak_db), last)
        take(gains.feed(need))
    take(gains.flush())
    ms = np.concatenate(parts) if parts else np.zeros(0)
    n = min(len(ms), len(energy))
    return loudness_or_momentary(energy[:n] * ms[:n] * 10 ** (g / 10), unit_len(config.sample_rate))


def _solve_gain(
    segments: list[Segment], energy: np.ndarray, config: MediaConfig, gain: float, ceil: float, goal: float
) -> float:
    """Find the gain whose limited output is predicted at GOAL (secant steps on dry runs)."""
    g0, p0 = gain, _predict(segments, energy, config, gain, ceil)
    if abs(p0 - goal) <= 0.05:
        return g0
    g1 = min(config.max_gain_db, g0 + (goal - p0))
    for _ in range(4):
        p1 = _predict(segments, energy, config, g1, ceil)
        if abs(p1 - goal) <= 0.05 or g1 >= config.max_gain_db:
            break
        slope = (p1 - p0) / (g1 - g0) if g1 != g0 else 1.0
        slope = min(1.0, max(0.2, slope))  # limiting only ever flattens the curve
        g0, p0 = g1, p1
        g1 = min(config.max_gain_db, g1 + (goal - p1) / slope)
    return g1


def _encoder_args(config: MediaConfig, out: Path) -> list[str]:
    common = [*wav_stream_input(config.sample_rate)[0], "-map_metadata", "-1"]
    bitexact = ["-fflags", "+bitexact", "-flags:a", "+bitexact"]
    if config.output_format == "opus":
        codec = ["-c:a", "libopus", "-b:a", f"{config.bitrate_kbps}k", "-application", "voip", "-f", "ogg"]
    else:
        codec = [
            "-c:a",
            "libmp3lame",
            "-b:a",
            f"{config.bitrate_kbps}k",
            "-compression_level",
            str(config.mp3_quality),
            "-id3v2_version",
            "0",
            "-f",
            "mp3",
        ]
    return [*common, *codec, *bitexact, "-y", str(out)]


def _waveform(unit_peaks: np.ndarray, points: int = _WAVEFORM_POINTS) -> list[float]:
    if unit_peaks.size == 0:
        return []
    # evenly spaced bins, so each point stands for the same stretch of time (to one unit)
    starts = np.linspace(0, unit_peaks.size, min(points, unit_peaks.size) + 1).astype(int)[:-1]
    return [round(min(1.0, float(p)), 3) for p in np.maximum.reduceat(unit_peaks, starts)]


def render(segments: list[Segment], config: MediaConfig, out_path: Path) -> Rendered:
    """Normalize the composite of SEGMENTS as a whole and encode it to OUT_PATH, measured.

    The integrated loudness is predicted from pass-1 unit energies and the limiter's own gain
    curve, then the encoded file is measured with ffmpeg's ebur128 and corrected if it misses.
    """
    ulen = unit_len(config.sample_rate)
    target = config.target_lufs
    energy = _energy(segments)
    gain = min(config.max_gain_db, target + _CODEC_LOSS_LU[config.output_format] - loudness_or_momentary(energy, ulen))
    ceiling = config.true_peak_dbtp - _CODEC_MARGIN_DB[config.output_format]
    peak_in = max(
        (s.prepared.peak_db + s.gain_db for s in segments if s.prepared is not None and s.units), default=-math.inf
    )
    goal = target + _CODEC_LOSS_LU[config.output_format]
    measured: Loudness | None = None
    wave: list[float] = []
    for attempts in range(1, _MAX_ATTEMPTS + 1):
        if peak_in + gain + 1.0 > ceiling:  # the limiter may act: predict its effect on loudness
            gain = _solve_gain(segments, energy, config, gain, ceiling, goal)
        with FfmpegProcess(_encoder_args(config, out_path), stdin=True) as enc:
            peaks = _limit_pass(segments, config, gain, ceiling, enc)
            enc.check()
        wave = _waveform(peaks)
        measured = measure_stored(out_path, config.output_format)
        miss = target - measured.integrated
        over = measured.true_peak - config.true_peak_dbtp
        logger.debug(
            "render attempt %d: gain %.2f dB ceiling %.2f -> %.1f LUFS %.1f dBTP",
            attempts,
            gain,
            ceiling,
            measured.integrated,
            measured.true_peak,
        )
        if abs(miss) <= _INNER_TOLERANCE_LU and over <= 0:
            break
        if over > 0:
            ceiling -= over + 0.2
        if abs(miss) > _INNER_TOLERANCE_LU:
            goal += miss  # the prediction was off by this much: aim the prediction further
            gain = min(config.max_gain_db, gain + miss)
    assert measured is not None
    warnings = []
    if abs(target - measured.integrated) > config.loudness_tolerance_lu or measured.true_peak > config.true_peak_dbtp:
        logger.warning(
            "loudness target missed: %.1f LUFS %.1f dBTP (target %.1f / %.1f)",
            measured.integrated,
            measured.true_peak,
            target,
            config.true_peak_dbtp,
        )
        warnings.append("media.loudness_off_target")
    return Rendered(
        measured=measured,
        waveform=wave,
        gain_db=gain,
        warnings=warnings,
    )
