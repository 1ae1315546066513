"""Every rejection raises its code and leaves the store empty (no clip, no temp file)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from media import MediaConfig, MediaError, MediaStore, ingest_upload

from .conftest import convert, write_wav

SR = 48000


def assert_rejected(src: object, store: MediaStore, config: MediaConfig, code: str) -> MediaError:
    with pytest.raises(MediaError) as caught:
        ingest_upload(src, store, config)  # type: ignore[arg-type]
    err = caught.value
    assert err.code == code, (err.code, err.details)
    assert err.zh
    assert err.en
    assert err.kind
    assert store.hashes() == []
    assert list(store.tmp_root.iterdir()) == []
    return err


def test_empty_file(tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    (tmp_path / "e.mp3").write_bytes(b"")
    assert_rejected(tmp_path / "e.mp3", store, config, "media.empty")
    assert_rejected(io.BytesIO(b""), store, config, "media.empty")


@pytest.mark.parametrize(
    "content",
    [
        "通知：明天停电。".encode() * 50,
        b"\x89PNG\r\n\x1a\n" + bytes(2000),
        b"%PDF-1.7\n" + bytes(3000),
        bytes(np.random.default_rng(3).integers(0, 256, 50_000, dtype=np.uint8)),
        b"<html><body>not audio</body></html>",
    ],
    ids=["text", "png", "pdf", "random", "html"],
)
def test_not_audio(content: bytes, tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    path = tmp_path / "notice.mp3"  # a name that lies
    path.write_bytes(content)
    err = assert_rejected(path, store, config, "media.not_audio")
    assert err.kind == "unsupported"


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "ogg", "webm", "flac", "amr"])
def test_truncated(
    fmt: str, speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    whole = convert(write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR), tmp_path / f"whole.{fmt}", fmt)
    data = whole.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) // 2 + 1])
    assert_rejected(cut, store, config, "media.corrupt")


def test_a_wav_cut_at_a_whole_sample_is_refused_at_intake(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    """ffmpeg sizes a WAV cut between two samples by its file and decodes it whole; intake reads the header."""
    whole = write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR)
    data = whole.read_bytes()
    header = data.index(b"data") + 8
    keep = header + (len(data) - header) // 2 // 4 * 4  # about half the frames, ending on a frame boundary
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:keep])
    assert_rejected(cut, store, config, "media.corrupt")


def test_garbage_after_a_valid_header(tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    path = tmp_path / "bad.flac"
    path.write_bytes(b"fLaC" + bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8)))
    assert_rejected(path, store, config, "media.corrupt")


def test_too_large_is_stopped_while_streaming(store: MediaStore, config: MediaConfig) -> None:
    config = replace(config, max_upload_bytes=1_000_000)

    class Endless(io.RawIOBase):
        """A client that would send forever; counts what was read."""

        read_bytes = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            b[:] = b"\x00" * len(b)
            self.read_bytes += len(b)
            return len(b)

    with Endless() as stream:
        err = assert_rejected(stream, store, config, "media.too_large")
        assert stream.read_bytes < 2_000_000, "the upload was not cut off at the limit"
    assert err.kind == "too_large"
    assert err.details["limit_bytes"] == 1_000_000


def test_too_large_file(speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    src = write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR)
    assert_rejected(src, store, replace(config, max_upload_bytes=src.stat().st_size - 1), "media.too_large")


def test_too_long(speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    src = write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR)
    err = assert_rejected(src, store, replace(config, max_duration_s=3.0), "media.too_long")
    assert err.details["limit_s"] == 3.0


def test_too_short(tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    t = np.arange(int(0.3 * SR)) / SR
    beep = np.sin(2 * np.pi * 440 * t) * 0.3
    assert_rejected(write_wav(tmp_path / "beep.wav", beep, SR), store, config, "media.too_short")
    # a short beep inside seconds of silence is just as short once trimmed
    padded = np.concatenate((np.zeros(SR * 2), beep, np.zeros(SR * 2)))
    assert_rejected(write_wav(tmp_path / "padded.wav", padded, SR), store, config, "media.too_short")


@pytest.mark.parametrize("level_dbfs", [None, -75.0, -60.0])
def test_silent(level_dbfs: float | None, tmp_path: Path, store: MediaStore, config: MediaConfig) -> None:
    n = SR * 3
    noise = np.zeros(n) if level_dbfs is None else np.random.default_rng(5).standard_normal(n) * 10 ** (level_dbfs / 20)
    err = assert_rejected(write_wav(tmp_path / "quiet.wav", noise, SR), store, config, "media.silent")
    assert err.details["limit_lufs"] == config.silence_lufs


def test_a_rejected_upload_leaves_earlier_clips_alone(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    good = ingest_upload(write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR), store, config)
    (tmp_path / "x.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(MediaError):
        ingest_upload(tmp_path / "x.wav", store, config)
    assert store.hashes() == [good.sha256]
