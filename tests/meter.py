"""An independent loudness meter for tests: ffmpeg's ebur128 filter, parsed from its summary."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg


@dataclass(frozen=True)
class Reading:
    """Integrated loudness (LUFS), true peak (dBTP), loudness range (LU) and duration (s)."""

    integrated: float
    true_peak: float
    lra: float
    duration: float


def measure(path: Path) -> Reading:
    """Measure a file with ffmpeg's EBU R128 meter (true peak on)."""
    result = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostats",
            "-hide_banner",
            "-i",
            str(path),
            "-af",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    err = result.stderr
    summary = err[err.rfind("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary).group(1))  # type: ignore[union-attr]
    lra = float(re.search(r"LRA:\s+(-?[\d.]+) LU", summary).group(1))  # type: ignore[union-attr]
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    durations = re.findall(r"time=(\d+):(\d+):([\d.]+)", err) or []
    dur_match = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err)
    duration = 0.0
    if dur_match:
        h, m, s = dur_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    elif durations:
        h, m, s = durations[-1]
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    return Reading(integrated, float(peak.group(1)) if peak else float("-inf"), lra, duration)
