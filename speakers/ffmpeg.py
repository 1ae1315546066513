"""The one runner for the ffmpeg binary (decoding formats miniaudio cannot, e.g. Opus and AAC)."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path

from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)

ENV_OVERRIDE = "BROADCAST_FFMPEG"


def ffmpeg_binary() -> str:
    """The ffmpeg to run: $BROADCAST_FFMPEG if set, else the one bundled with imageio-ffmpeg."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return override
    try:
        import imageio_ffmpeg  # optional on a device that has only MP3 media
    except ImportError as exc:
        raise SpeakerError(
            "speakers.no_ffmpeg",
            "找不到 ffmpeg：请安装 imageio-ffmpeg 或设置 BROADCAST_FFMPEG。",
            "ffmpeg not found: install imageio-ffmpeg or set BROADCAST_FFMPEG.",
            kind="unavailable",
        ) from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, timeout: float = 300.0) -> bytes:
    """Run ffmpeg with `args` (no binary, no -y needed) and return its stdout; raise with stderr on failure."""
    command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
    logger.debug("running %s", shlex.join(command))
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeakerError(
            "speakers.ffmpeg_failed", f"ffmpeg 无法运行：{exc}", f"ffmpeg could not run: {exc}", kind="unavailable"
        ) from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise SpeakerError(
            "speakers.ffmpeg_failed",
            f"ffmpeg 出错：{stderr}",
            f"ffmpeg failed: {stderr}",
            kind="invalid",
            stderr=stderr,
        )
    return done.stdout


def decode_to_s16(path: Path, *, sample_rate: int = 48000, channels: int = 1) -> bytes:
    """Decode any audio file to raw signed 16-bit little-endian PCM."""
    return run_ffmpeg(["-i", str(path), "-f", "s16le", "-ac", str(channels), "-ar", str(sample_rate), "pipe:1"])
