"""Pin: with default settings every clip comes out at -16 LUFS integrated, true peak at most -1.5 dBTP.

The figures are literals on purpose: a test that compared against `config.target_lufs` would follow a changed
default instead of catching it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media import MediaConfig, MediaStore, ingest_upload, synthesize_text
from tests.meter import measure

from .conftest import SPEECH_TEXT, write_wav

SR = 48000
DEFAULT_LUFS = -16.0
DEFAULT_PEAK_DBTP = -1.5


def test_the_defaults_are_the_broadcast_standard() -> None:
    config = MediaConfig()
    assert config.target_lufs == DEFAULT_LUFS
    assert config.true_peak_dbtp == DEFAULT_PEAK_DBTP
    assert config.loudness_tolerance_lu == 0.5


@pytest.mark.parametrize("gain_db", [-24.0, 0.0], ids=["quiet recording", "loud recording"])
def test_an_upload_with_default_settings_measures_minus_16(
    gain_db: float, speech_samples: np.ndarray, tmp_path: Path, store: MediaStore
) -> None:
    src = write_wav(tmp_path / "in.wav", speech_samples * 10 ** (gain_db / 20), SR)
    before = measure(src).integrated
    info = ingest_upload(src, store, MediaConfig(tts_engines=("espeak",)))
    reading = measure(store.path(info.sha256))  # ffmpeg's own meter, not the pipeline's
    assert abs(before - DEFAULT_LUFS) > 2, "the input starts away from the target, so the check means something"
    assert abs(reading.integrated - DEFAULT_LUFS) <= 0.5, reading
    assert reading.true_peak <= DEFAULT_PEAK_DBTP + 0.1, reading
    assert abs(info.loudness_lufs - DEFAULT_LUFS) <= 0.5, info


def test_speech_with_default_settings_measures_minus_16(store: MediaStore) -> None:
    info = synthesize_text(SPEECH_TEXT, store, MediaConfig(tts_engines=("espeak",)))
    reading = measure(store.path(info.sha256))
    assert abs(reading.integrated - DEFAULT_LUFS) <= 0.5, reading
    assert reading.true_peak <= DEFAULT_PEAK_DBTP + 0.1, reading
