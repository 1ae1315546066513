"""Pass 1: decode, downmix, resample, high-pass; spool to a raw temp file and measure as it streams."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import errors
from .bs1770 import kweight_filter, loudness_or_momentary, max_momentary, unit_len
from .config import MediaConfig
from .limiter import BlockPeaks
from .runner import FfmpegProcess

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_CHANNELS = 3  # interleaved: mono before the high-pass, after it, and K-weighted
_ERROR_TAGS = ("[error]", "[fatal]", "[panic]")
_CLIP_LEVEL = 0.9  # "near full scale" for the clipping check (a -1 dBFS peak is normal, this is not)
BLOCKS_PER_UNIT = 10  # true-peak summary resolution: 1 ms blocks
_GRAPH_FRAME_UNITS = 20  # frame size inside the pass-1 filter graph: 200 ms
_READ_UNITS = 100  # samples handled per numpy step: one second


def block_edges(ulen: int) -> np.ndarray:
    """Start offsets of the BLOCKS_PER_UNIT blocks inside one unit."""
    return np.linspace(0, ulen, BLOCKS_PER_UNIT + 1).astype(int)[:-1]


def block_lengths(ulen: int) -> np.ndarray:
    """Samples in each block of one unit (equal when the unit divides by ten)."""
    return np.diff(np.append(block_edges(ulen), ulen))


@dataclass
class Prepared:
    """Processed (mono, resampled, high-passed) audio spooled as float32 plus its measurements."""

    raw_path: Path  # float32 little-endian mono samples at sample_rate
    sample_rate: int
    unit_energy: np.ndarray  # per 10 ms unit: sum of squares of the K-weighted signal
    unit_peak: np.ndarray  # per 10 ms unit: sample peak of the high-passed signal
    block_peak: np.ndarray  # per unit x 1 ms block: 4x-oversampled peak (float32, shape (units, 10))
    clipped_fraction: float  # share of sounding samples near full scale before filtering
    start_unit: int  # first unit kept after trimming silence
    end_unit: int  # one past the last unit kept
    loudness: float  # integrated loudness of the kept range, LUFS

    @property
    def ulen(self) -> int:
        """Samples in one unit."""
        return unit_len(self.sample_rate)

    @property
    def peak_db(self) -> float:
        """Sample peak of the kept range in dBFS."""
        peak = float(self.unit_peak[self.start_unit : self.end_unit].max(initial=0.0))
        return 20 * math.log10(peak) if peak > 0 else -math.inf


def filter_graph(config: MediaConfig) -> str:
    """The pass-1 filter graph: mono float at the output rate, a Butterworth high-pass, K-weighting.

    Decoders hand over small frames (1152 samples for MP3) and ffmpeg passes every frame between
    its threads; regrouping into 200 ms frames right after the resampler cuts that overhead (over
    a quarter of this pass's CPU on MP3 input) without changing a sample.
    """
    sr = config.sample_rate
    hp = config.highpass_hz
    # a 4th-order Butterworth high-pass as two biquads with the Butterworth Q values
    highpass = f"highpass=f={hp}:width_type=q:width=0.5412,highpass=f={hp}:width_type=q:width=1.3066"
    return (
        f"[0:a:0]aformat=sample_fmts=fltp:channel_layouts=mono,"
        f"aresample={sr},asetnsamples=n={_GRAPH_FRAME_UNITS * unit_len(sr)}:p=0,"
        f"aformat=sample_fmts=flt:sample_rates={sr},asplit=2[raw][h];"
        f"[h]{highpass},asplit=2[hp][k];[k]{kweight_filter(sr)}[kw];"
        f"[raw][hp][kw]join=inputs=3:channel_layout=3.0:map=0.0-FL|1.0-FR|2.0-FC[out]"
    )


def analyze(input_args: list[str], raw_path: Path, config: MediaConfig) -> Prepared:
    """Run pass 1 on the input named by INPUT_ARGS (e.g. ["-f", "wav", "-i", path]) into RAW_PATH.

    Raises MediaError: too_long (while decoding), corrupt (decoder errors or nothing decoded),
    silent, too_short.
    """
    sr = config.sample_rate
    ulen = unit_len(sr)
    frame_bytes = _CHANNELS * 4
    chunk_bytes = ulen * _READ_UNITS * frame_bytes
    max_samples = int(config.max_duration_s * sr)
    energies: list[np.ndarray] = []
    blocks = BlockPeaks(block_lengths(ulen))
    block_peaks: list[np.ndarray] = []
    peaks: list[np.ndarray] = []
    clip_hits = 0
    sounding = 0
    n = 0
    args = [
        "-loglevel",
        "level+info",
        *input_args,
        "-filter_complex",
        filter_graph(config),
        "-map",
        "[out]",
        "-f",
        "f32le",
        "-c:a",
        "pcm_f32le",
        "pipe:1",
    ]
    with FfmpegProcess(args, stdout=True) as proc, raw_path.open("wb") as raw:
        stdout = proc.proc.stdout
        assert stdout is not None
        while True:
            data = stdout.read(chunk_bytes)
            if not data:
                break
            frames = np.frombuffer(data, dtype="<f4", count=len(data) // frame_bytes * _CHANNELS)
            m = len(frames) // _CHANNELS
            n += m
            if n > max_samples:
                proc.kill()
                raise errors.too_long(config.max_duration_s)
            # one de-interleaving copy, zero-padded to whole units (only the last read is short)
            planes = np.zeros((_CHANNELS, m + (-m) % ulen), dtype="<f4")
            planes[:, :m] = frames.reshape(m, _CHANNELS).T
            dry, hp, kw = planes
            raw.write(hp[:m].data)
            block_peaks.append(blocks.feed(hp))
            units = hp.reshape(-1, ulen)
            peaks.append(np.maximum(units.max(axis=1), -units.min(axis=1)))
            units = kw.reshape(-1, ulen)
            # float32 sums of 240 squares: a relative error near 1e-6, far below 0.01 LU
            energies.append(np.einsum("ij,ij->i", units, units).astype(np.float64))
            level = np.abs(dry[:m])
            sounding += np.count_nonzero(level > 0.01)
            clip_hits += np.count_nonzero(level >= _CLIP_LEVEL)
        block_peaks.append(blocks.flush())
        rc = proc.finish()
        stderr = proc.stderr_text()
    error_lines = [line for line in stderr.splitlines() if any(tag in line for tag in _ERROR_TAGS)]
    # a duration estimated from the bitrate (ADTS, VBR MP3 without a Xing header) proves nothing
    declared = None if "Estimating duration from bitrate" in stderr else _declared_duration(stderr)
    if rc != 0 or error_lines:
        logger.info("decode failed (rc=%s): %s", rc, " | ".join(error_lines[-3:]))
        raise errors.corrupt("\n".join(error_lines) or stderr)
    if n == 0:
        raise errors.corrupt("no audio decoded")
    decoded_s = n / sr
    if declared is not None and decoded_s < declared * 0.98 - 0.3:
        raise errors.corrupt(f"decoded {decoded_s:.2f} s of {declared:.2f} s declared")
    unit_energy = np.concatenate(energies)
    unit_peak = np.concatenate(peaks)
    loudest = max_momentary(unit_energy, ulen)
    if not loudest > config.silence_lufs:
        raise errors.silent(loudest if math.isfinite(loudest) else None, config.silence_lufs)
    start, end, sound_units = trim_range(unit_energy, ulen, loudest, config)
    sound_s = sound_units * ulen / sr
    if sound_s < config.min_duration_s:
        raise errors.too_short(sound_s, config.min_duration_s)
    # shorter than one 400 ms block once trimmed: falls back to the plain mean square
    loudness = loudness_or_momentary(unit_energy[start:end], ulen)
    return Prepared(
        raw_path=raw_path,
        sample_rate=sr,
        unit_energy=unit_energy,
        unit_peak=unit_peak,
        block_peak=np.concatenate(block_peaks),
        clipped_fraction=clip_hits / sounding if sounding else 0.0,
        start_unit=start,
        end_unit=end,
        loudness=loudness,
    )


def trim_range(unit_energy: np.ndarray, ulen: int, loudest: float, config: MediaConfig) -> tuple[int, int, int]:
    """Units [start, end) to keep (first to last sound plus trim_pad_s each side) and the sound span."""
    threshold = max(loudest - config.trim_depth_db, -70.0)
    smooth = np.convolve(unit_energy, np.ones(3) / 3, mode="same")
    with np.errstate(divide="ignore"):
        level = -0.691 + 10 * np.log10(smooth / ulen)
    sounding = np.flatnonzero(level >= threshold)
    if sounding.size == 0:
        return 0, len(unit_energy), 0
    first, last = int(sounding[0]), int(sounding[-1])
    pad = round(config.trim_pad_s * 100)
    return max(0, first - pad), min(len(unit_energy), last + 1 + pad), last + 1 - first


def _declared_duration(stderr: str) -> float | None:
    m = _DURATION.search(stderr)
    if not m:
        return None
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)
