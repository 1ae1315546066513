"""The stored-file meter: dr_mp3-decoded samples piped into ebur128 read like ffmpeg's own decode."""

from __future__ import annotations

import array
from collections.abc import Iterator
from pathlib import Path

import miniaudio
import numpy as np
import pytest

from media import MediaConfig, MediaError, MediaStore, ingest_upload, measure_loudness
from media.measure import measure_stored

from .conftest import STEP_DB, ffmpeg, write_wav

SR = 48000


def assert_same_reading(path: Path) -> None:
    piped = measure_stored(path, "mp3")
    direct = measure_loudness(path)
    assert abs(piped.integrated - direct.integrated) <= STEP_DB, (piped, direct)
    assert abs(piped.true_peak - direct.true_peak) <= STEP_DB, (piped, direct)
    assert abs(piped.lra - direct.lra) <= 2 * STEP_DB, (piped, direct)
    assert abs(piped.duration_s - direct.duration_s) < 0.03, (piped, direct)


def test_stored_clip_reads_the_same(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig
) -> None:
    info = ingest_upload(write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR), store, config)
    path = store.path(info.sha256)
    assert_same_reading(path)
    assert info.loudness_lufs == measure_stored(path, "mp3").integrated


@pytest.mark.parametrize("freq", [997.0, 9000.0, 11000.0])
def test_tones_and_intersample_peaks_read_the_same(freq: float, tmp_path: Path) -> None:
    # a high tone sampled at 24 kHz peaks between samples: both meters must see the true peak
    t = np.arange(SR * 3) / SR
    tone = np.sin(2 * np.pi * freq * t + 0.3) * np.where(t % 1.0 < 0.7, 0.5, 0.05)
    src = write_wav(tmp_path / "tone.wav", tone, SR)
    out = tmp_path / "tone.mp3"
    ffmpeg("-f", "wav", "-i", str(src), "-ar", "24000", "-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3", str(out))
    assert_same_reading(out)


def test_stereo_mp3_reads_the_same(speech_samples: np.ndarray, tmp_path: Path) -> None:
    stereo = np.stack((speech_samples * 0.4, np.roll(speech_samples, 480) * 0.2), axis=1)
    src = write_wav(tmp_path / "stereo.wav", stereo, SR)
    out = tmp_path / "stereo.mp3"
    ffmpeg("-f", "wav", "-i", str(src), "-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", str(out))
    assert_same_reading(out)


def test_not_an_mp3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(bytes(np.random.default_rng(4).integers(0, 256, 20_000, dtype=np.uint8)))
    with pytest.raises(MediaError) as caught:
        measure_stored(bad, "mp3")
    assert caught.value.code == "media.measure_failed"


class FakeBrokenDecoder:
    """Stands in for miniaudio.stream_file: two seconds of audio, then a decoder error."""

    def __call__(self, *args: object, **kwargs: object) -> Iterator[array.array]:
        for _ in range(2):
            yield array.array("f", bytes(24000 * 4))
        raise miniaudio.DecodeError("fake decoder failure")


def test_a_failed_measurement_stores_nothing(
    speech_samples: np.ndarray, tmp_path: Path, store: MediaStore, config: MediaConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_wav(tmp_path / "in.wav", speech_samples * 0.3, SR)
    monkeypatch.setattr(miniaudio, "stream_file", FakeBrokenDecoder())
    with pytest.raises(MediaError) as caught:
        ingest_upload(src, store, config)
    assert caught.value.code == "media.measure_failed"
    assert store.hashes() == []
    assert list(store.tmp_root.iterdir()) == []
