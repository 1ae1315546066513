"""Audio helpers shared by the tests and the media benchmark: ffmpeg, WAV write/read, espeak-ng speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from media import MediaConfig
from media.runner import ffmpeg_exe
from media.tts import SynthJob
from media.tts.espeak import EspeakEngine


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly; raise on error."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples (n,) or (n, channels) as 16-bit PCM WAV, clipping like a real recorder."""
    data = np.asarray(samples, dtype=np.float64)
    channels = 1 if data.ndim == 1 else data.shape[1]
    pcm = (np.clip(data, -1.0, 1.0) * 32767).astype("<i2")
    raw = path.with_suffix(".s16")
    pcm.tofile(raw)
    ffmpeg("-f", "s16le", "-ar", str(sample_rate), "-ac", str(channels), "-i", str(raw), "-c:a", "pcm_s16le", str(path))
    raw.unlink()
    return path


def read_wav_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Decode any file to mono float samples at SAMPLE_RATE."""
    out = subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, dtype="<f4").astype(np.float64)


def espeak_wav(folder: Path, *chunks: str) -> Path:
    """Real espeak-ng Mandarin speaking CHUNKS, as a WAV file (22.05 kHz mono) in FOLDER."""
    job = SynthJob(chunks=list(chunks), voice="cmn", rate=1.0, out_dir=folder, config=MediaConfig())
    return EspeakEngine().synthesize(job).path
