"""Every accepted upload format and corpus case goes through ingest_upload and is measured."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from media import ClipInfo, MediaConfig, MediaStore, ingest_upload, measure_loudness

from .conftest import STEP_DB, convert, read_wav_mono, stream_info, write_wav

SR = 48000


def padded_speech(speech: np.ndarray, gain_db: float = 0.0, silence_s: float = 1.0) -> np.ndarray:
    """Speech with SILENCE_S of faint room noise (-75 dBFS) before and after."""
    rng = np.random.default_rng(7)
    quiet = rng.standard_normal(int(SR * silence_s)) * 10 ** (-75 / 20)
    return np.concatenate((quiet, speech * 10 ** (gain_db / 20), quiet))


def assert_normalized(info: ClipInfo, store: MediaStore, config: MediaConfig) -> None:
    """The stored file, measured by ffmpeg's ebur128, meets the targets and matches the ClipInfo."""
    path = store.path(info.sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256
    assert info.size_bytes == path.stat().st_size
    meter = measure_loudness(path)
    assert abs(meter.integrated - config.target_lufs) <= 0.5, meter
    assert meter.true_peak <= config.true_peak_dbtp, meter
    # the clip was measured on dr_mp3's decode, this on ffmpeg's: equal but for a 0.1 rounding step
    assert abs(info.loudness_lufs - meter.integrated) <= STEP_DB
    assert abs(info.true_peak_dbtp - meter.true_peak) <= STEP_DB
    assert abs(info.duration_ms / 1000 - meter.duration_s) < 0.05
    rate, layout = stream_info(path)
    assert (rate, layout) == (config.sample_rate, "mono")
    assert 150 <= len(info.waveform) <= 200 or info.duration_ms < 2000
    assert all(0.0 <= v <= 1.0 for v in info.waveform)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "aac", "ogg", "webm", "flac", "amr", "3gp"])
def test_every_format_is_normalized_and_trimmed(
    fmt: str, speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    src = write_wav(tmp_path / "in.wav", padded_speech(speech_samples, -6.0), SR)
    upload = convert(src, tmp_path / "upload.bin", fmt)  # the name says nothing about the format
    info = ingest_upload(upload, store, config)
    assert info.source == "upload"
    assert info.source_format == fmt
    assert_normalized(info, store, config)
    speech_s = len(speech_samples) / SR
    # 2 s of leading/trailing room noise are gone; 2 x 0.15 s of context stay
    assert speech_s - 0.3 < info.duration_ms / 1000 < speech_s + 0.5
    out = read_wav_mono(store.path(info.sha256), 24000)
    head = out[: int(0.4 * 24000)]
    assert 20 * np.log10(np.abs(head).max()) > -30, "speech starts within 0.4 s: leading silence trimmed"
    assert store.hashes() == [info.sha256]


def test_stream_of_unknown_length(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    upload = convert(write_wav(tmp_path / "in.wav", speech_samples, SR), tmp_path / "u.bin", "webm")

    class Unsized(io.RawIOBase):
        """A browser upload: readable, not seekable, no length."""

        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self._buf.read(min(len(b), 4096))
            b[: len(chunk)] = chunk
            return len(chunk)

    with Unsized(upload.read_bytes()) as stream:
        info = ingest_upload(stream, store, config)
    assert info.source_format == "webm"
    assert_normalized(info, store, config)


def test_quiet_speech_needing_more_than_20_db(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    src = write_wav(tmp_path / "quiet.wav", padded_speech(speech_samples, -24.0), SR)
    assert measure_loudness(src).integrated < -38
    info = ingest_upload(src, store, config)
    assert info.gain_db > 20
    assert_normalized(info, store, config)


def test_heavily_clipped_input_is_accepted_with_a_warning(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    src = write_wav(tmp_path / "clipped.wav", padded_speech(speech_samples, +18.0), SR)  # clipped in write_wav
    info = ingest_upload(src, store, config)
    assert "media.clipped_input" in info.warnings
    assert_normalized(info, store, config)


def test_normal_input_has_no_clipping_warning(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    src = write_wav(tmp_path / "fine.wav", speech_samples * 0.5, SR)
    assert ingest_upload(src, store, config).warnings == []


def test_stereo_48k_becomes_mono(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    left = padded_speech(speech_samples, -3.0)
    right = np.roll(left, 240) * 0.5
    src = write_wav(tmp_path / "stereo.wav", np.stack((left, right), axis=1), SR)
    assert stream_info(src) == (48000, "stereo")
    assert_normalized(ingest_upload(src, store, config), store, config)


def test_one_second_clip(speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    active = np.flatnonzero(np.abs(speech_samples) > 0.05)
    clip = speech_samples[active[0] : active[0] + SR]
    info = ingest_upload(write_wav(tmp_path / "one.wav", clip * 0.3, SR), store, config)
    assert 0.9 < info.duration_ms / 1000 < 1.35
    assert_normalized(info, store, config)


def test_opus_output(speech_samples: np.ndarray, tmp_path: Path, store: MediaStore) -> None:
    config = MediaConfig(output_format="opus", tts_engines=("espeak",))
    info = ingest_upload(write_wav(tmp_path / "in.wav", speech_samples * 0.2, SR), store, config)
    assert (info.format, info.mime) == ("opus", "audio/ogg")
    assert store.path(info.sha256).suffix == ".opus"
    meter = measure_loudness(store.path(info.sha256))
    assert abs(meter.integrated - config.target_lufs) <= 0.5
    assert meter.true_peak <= config.true_peak_dbtp


def test_other_targets_are_honoured(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    config = replace(config, target_lufs=-20.0, true_peak_dbtp=-3.0, bitrate_kbps=48)
    info = ingest_upload(write_wav(tmp_path / "in.wav", speech_samples * 0.2, SR), store, config)
    assert_normalized(info, store, config)


def test_same_input_same_clip(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    src = write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR)
    first = ingest_upload(src, store, config)
    second = ingest_upload(src, store, config)
    assert first.sha256 == second.sha256
    assert store.hashes() == [first.sha256]
