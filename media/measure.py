"""Independent loudness meter: ffmpeg's ebur128 filter (EBU R128 / ITU-R BS.1770) on a file."""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import miniaudio

from .errors import MediaError
from .runner import FfmpegProcess, run_ffmpeg, wav_stream_input

_EBUR128 = "ebur128=peak=true:framelog=quiet"

_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-?inf|nan) LUFS.*?"
    r"Loudness range:\s*LRA:\s*(?P<lra>-?[\d.]+|nan) LU.*?"
    r"True peak:\s*Peak:\s*(?P<tp>-?[\d.]+|-?inf|nan) dBFS",
    re.S,
)
_TIME = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Loudness:
    """What the meter says about one file."""

    integrated: float  # integrated loudness, LUFS (-inf for silence)
    true_peak: float  # true peak, dBTP
    lra: float  # loudness range, LU
    duration_s: float  # decoded duration, seconds


def _measure_failed(detail: str) -> MediaError:
    return MediaError(
        "media.measure_failed", "无法测量响度。", "Loudness could not be measured.", kind="unavailable", stderr=detail
    )


def _num(text: str) -> float:
    return -math.inf if "inf" in text or text == "nan" else float(text)


def parse_ebur128(stderr: str) -> tuple[float, float, float]:
    """Pull (integrated, true peak, LRA) out of the ebur128 summary in ffmpeg's stderr."""
    found = list(_SUMMARY.finditer(stderr))
    if not found:
        raise _measure_failed(stderr[-1000:])
    m = found[-1]
    return _num(m["i"]), _num(m["tp"]), _num(m["lra"]) if m["lra"] != "nan" else 0.0


def measure_loudness(path: Path) -> Loudness:
    """Measure a file with ffmpeg's ebur128 filter: integrated LUFS, true peak, LRA and duration."""
    stderr = run_ffmpeg(
        ["-i", str(path), "-map", "0:a:0", "-filter:a", _EBUR128, "-f", "null", "-"],
        loglevel="info",
    )
    integrated, tp, lra = parse_ebur128(stderr)
    times = _TIME.findall(stderr)
    duration = 0.0
    if times:
        h, m, s = times[-1]
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    return Loudness(integrated=integrated, true_peak=tp, lra=lra, duration_s=duration)


def measure_stored(path: Path, fmt: str) -> Loudness:
    """Measure an encoded clip the way measure_loudness does, at less cost for MP3.

    The MP3 is decoded in-process by dr_mp3 (miniaudio: a decoder independent of the LAME encoder
    and of ffmpeg, gapless like ffmpeg's, equal to it within -80 dB) and its samples are piped
    into the same ebur128 meter. ffmpeg's own MP3 decoding hands every 24 ms frame between its
    threads and was half of this pass's CPU. Other formats go to measure_loudness.
    """
    if fmt != "mp3":
        return measure_loudness(path)
    try:
        info = miniaudio.mp3_get_file_info(str(path))
    except miniaudio.MiniaudioError as exc:
        raise _measure_failed(f"{type(exc).__name__}: {exc}") from exc
    source, header = wav_stream_input(info.sample_rate, info.nchannels)
    chunks = miniaudio.stream_file(
        str(path),
        output_format=miniaudio.SampleFormat.FLOAT32,
        nchannels=info.nchannels,
        sample_rate=info.sample_rate,
        frames_to_read=info.sample_rate,  # one second at a time: memory stays flat
    )
    samples = 0
    args = ["-loglevel", "info", *source, "-filter:a", _EBUR128, "-f", "null", "-"]
    with FfmpegProcess(args, stdin=True) as meter, contextlib.closing(chunks):
        stdin = meter.proc.stdin
        assert stdin is not None
        try:
            stdin.write(header)
            for chunk in chunks:
                stdin.write(chunk)
                samples += len(chunk)
        except miniaudio.MiniaudioError as exc:
            raise _measure_failed(f"{type(exc).__name__}: {exc}") from exc
        except BrokenPipeError:
            pass  # the meter stopped reading: check() raises with its stderr
        stderr = meter.check()
    integrated, tp, lra = parse_ebur128(stderr)
    duration = samples / info.nchannels / info.sample_rate
    return Loudness(integrated=integrated, true_peak=tp, lra=lra, duration_s=duration)
