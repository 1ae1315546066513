"""The one runner for ffmpeg: finds the binary, logs commands, turns failures into MediaError."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from .errors import MediaError, ffmpeg_failed

logger = logging.getLogger(__name__)

ENV_FFMPEG = "BROADCAST_FFMPEG"
# Pipe buffer for streamed audio: a second of samples fits, so each side wakes the other less often.
_PIPE_BYTES = 1 << 20
# Samples streamed into ffmpeg go as a float WAV of unknown length rather than raw f32le: the WAV
# demuxer takes a packet size, and 16384-sample packets mean fewer hand-overs between ffmpeg's
# threads than raw PCM's 2048 (10-20 % of a meter or encoder run).
_STREAM_PACKET_BYTES = 65536


@functools.cache
def _find_ffmpeg() -> str:
    override = os.environ.get(ENV_FFMPEG)
    if override:
        found = shutil.which(override) or (override if Path(override).is_file() else None)
        if not found:
            raise MediaError(
                "media.ffmpeg_missing",
                f"找不到 {ENV_FFMPEG} 指定的 ffmpeg。",
                f"The ffmpeg named by {ENV_FFMPEG} does not exist.",
                kind="unavailable",
                path=override,
            )
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        found = shutil.which("ffmpeg")
        if found:
            return found
        raise MediaError(
            "media.ffmpeg_missing", "找不到 ffmpeg。", "ffmpeg was not found.", kind="unavailable"
        ) from exc


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $BROADCAST_FFMPEG first, else the one bundled by imageio-ffmpeg."""
    return _find_ffmpeg()


def base_cmd(loglevel: str = "error") -> list[str]:
    """The start of every ffmpeg command: non-interactive, deterministic, logging at LOGLEVEL."""
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel]


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (field 39 of /proc/thread-self/stat), if known."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[36])
    except (OSError, IndexError, ValueError):
        return None


def pin_to_current_cpu(pid: int) -> None:
    """Keep ffmpeg child PID (and the threads it starts) on the CPU the calling thread runs on.

    ffmpeg runs demuxer, decoder, filters, encoder and muxer in threads that hand every audio frame
    (24-43 ms of sound) to one another. Spread over CPUs, each hand-over is a cross-CPU wake-up;
    on one CPU it is a plain context switch: 5-15 % less CPU for the chain, more when the machine
    is busy. The stages are sequential per frame anyway, and the caller's Python side still runs
    in parallel wherever the scheduler puts it. Best effort: skipped where unsupported.
    """
    cpu = _current_cpu()
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        if cpu not in os.sched_getaffinity(0):
            return
        os.sched_setaffinity(pid, {cpu})
        for task in os.listdir(f"/proc/{pid}/task"):  # any thread it started already
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), {cpu})


def wav_stream_input(sample_rate: int, channels: int = 1) -> tuple[list[str], bytes]:
    """ffmpeg input arguments for float32 samples on stdin, and the WAV header to send before them."""
    block = 4 * channels
    fmt = struct.pack("<HHIIHH", 3, channels, sample_rate, sample_rate * block, block, 32)  # 3: IEEE float
    unknown = struct.pack("<I", 0xFFFFFFFF)  # a stream: RIFF and data sizes unknown
    header = b"RIFF" + unknown + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + unknown
    return ["-f", "wav", "-max_size", str(_STREAM_PACKET_BYTES), "-i", "pipe:0"], header


def run_ffmpeg(args: list[str], *, loglevel: str = "error", timeout: float | None = None) -> str:
    """Run ffmpeg to completion with ARGS and return its stderr; raise MediaError on failure."""
    cmd = [*base_cmd(loglevel), *args]
    logger.debug("run: %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ffmpeg_failed(cmd, None, str(exc)) from exc
    with proc:
        pin_to_current_cpu(proc.pid)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise ffmpeg_failed(cmd, None, "timeout") from exc
    stderr = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ffmpeg_failed(cmd, proc.returncode, stderr)
    return stderr


class FfmpegProcess:
    """A streaming ffmpeg child whose stderr goes to an unnamed temp file, so pipes never deadlock."""

    def __init__(self, args: list[str], *, stdin: bool = False, stdout: bool = False) -> None:
        self.cmd = [*base_cmd(), *args]
        logger.debug("start: %s", " ".join(self.cmd))
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed in close()
        try:
            self.proc = self._spawn(stdin, stdout)
        except OSError as exc:
            self._err.close()
            raise ffmpeg_failed(self.cmd, None, str(exc)) from exc

    def _spawn(self, stdin: bool, stdout: bool) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=self._err,
        )
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
                with contextlib.suppress(OSError):  # over the user's pipe allowance: the default works
                    fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        pin_to_current_cpu(proc.pid)
        return proc

    def stderr_text(self) -> str:
        """Everything ffmpeg wrote to stderr so far (last 64 KiB)."""
        self._err.flush()
        size = self._err.seek(0, os.SEEK_END)
        self._err.seek(max(0, size - 65536))
        return self._err.read().decode("utf-8", "replace")

    def finish(self, timeout: float = 60.0) -> int:
        """Close our pipe ends, wait for the exit and return the return code."""
        if self.proc.stdin and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return rc

    def check(self, timeout: float = 60.0) -> str:
        """finish() and raise MediaError when ffmpeg failed; return its stderr."""
        rc = self.finish(timeout)
        err = self.stderr_text()
        if rc != 0:
            raise ffmpeg_failed(self.cmd, rc, err)
        return err

    def kill(self) -> None:
        """Stop the child at once (used when an input breaks a limit mid-stream)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def close(self) -> None:
        """Release the child and the stderr file, whatever state they are in."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()
        self._err.close()

    def __enter__(self) -> FfmpegProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
