"""Fixtures for the media tests: real ffmpeg, real espeak-ng speech, a store in tmp_path."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from media import MediaConfig, MediaStore
from media.runner import ffmpeg_exe
from tests.audio import espeak_wav, ffmpeg, read_wav_mono, write_wav

# One 0.1 dB step between two readings rounded to 0.1, compared in floating point (-2.3 - -2.4 is 0.10000000000000009)
STEP_DB = 0.1 + 1e-9

__all__ = ["FORMAT_ARGS", "SPEECH_TEXT", "convert", "ffmpeg", "read_wav_mono", "stream_info", "write_wav"]

SPEECH_TEXT = "各位村民请注意，今天下午十四点三十分将有八级大风，请大家关好门窗，注意安全。"

# ffmpeg arguments that make each accepted upload format from a WAV
FORMAT_ARGS: dict[str, list[str]] = {
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "96k", "-f", "mp3"],
    "m4a": ["-c:a", "aac", "-b:a", "96k", "-f", "ipod"],
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "ogg": ["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"],
    "webm": ["-c:a", "libopus", "-b:a", "48k", "-f", "webm"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "amr": ["-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "amr"],
    "3gp": ["-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "3gp"],
}


def convert(src: Path, dest: Path, fmt: str, *pre: str) -> Path:
    """Encode SRC into DEST in upload format FMT (optionally with extra filters/options PRE)."""
    ffmpeg("-i", str(src), *pre, *FORMAT_ARGS[fmt], str(dest))
    return dest


def stream_info(path: Path) -> tuple[int, str]:
    """(sample rate, channel layout) of the first audio stream, as ffmpeg reports it."""
    proc = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True, check=False)
    m = re.search(r"Audio: [^,]+, (\d+) Hz, (\w+)", proc.stderr.decode())
    assert m, proc.stderr.decode()
    return int(m.group(1)), m.group(2)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 9 s of real espeak-ng Mandarin (22.05 kHz mono WAV), shared by the session."""
    return espeak_wav(tmp_path_factory.mktemp("speech"), SPEECH_TEXT)


@pytest.fixture(scope="session")
def speech_samples(speech_wav: Path) -> np.ndarray:
    """The session speech as float samples at 48 kHz."""
    return read_wav_mono(speech_wav, 48000)


@pytest.fixture
def config() -> MediaConfig:
    """Production defaults, offline TTS only (edge is tried in its own tests)."""
    return MediaConfig(tts_engines=("espeak",))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MediaStore]:
    """An empty store; after the test its temp area must be empty again."""
    s = MediaStore(tmp_path / "media")
    yield s
    assert list(s.tmp_root.iterdir()) == [], "temp files left behind"
