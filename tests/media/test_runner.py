"""The ffmpeg runner: streamed float WAV input, children kept on one CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from media.runner import FfmpegProcess, ffmpeg_exe, wav_stream_input
from tests.conftest import wait_for


def test_wav_stream_input_round_trips_float_samples() -> None:
    x = (np.sin(np.arange(30_000) * 0.01) * 0.7).astype("<f4")
    stereo = np.stack((x, -x), axis=1)
    source, header = wav_stream_input(24000, 2)
    out = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", *source, "-c:a", "pcm_f32le", "-f", "f32le", "-"],
        input=header + stereo.tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    np.testing.assert_array_equal(np.frombuffer(out, dtype="<f4").reshape(-1, 2), stereo)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity is Linux-only")
def test_streaming_children_stay_on_one_cpu() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing to pin")
    args = ["-re", "-f", "lavfi", "-i", "sine=r=24000", "-t", "30", "-af", "volume=0.5", "-f", "null", "-"]
    with FfmpegProcess(args) as proc:
        folder = f"/proc/{proc.proc.pid}/task"
        tasks = wait_for(lambda: len(os.listdir(folder)) > 1 and os.listdir(folder), "ffmpeg's worker threads")
        cpus = {frozenset(os.sched_getaffinity(int(t))) for t in tasks}
        assert len(cpus) == 1
        assert len(next(iter(cpus))) == 1
