"""Uploads through the API: every accepted format is measured; every bad input is refused and stores nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from broadcast.models import AuditEvent, Clip
from tests.audio import espeak_wav
from tests.broadcast.conftest import auth, seed_county
from tests.broadcast.test_api import assert_error, count
from tests.conftest import free_port, make_app
from tests.media.conftest import SPEECH_TEXT, convert, write_wav
from tests.meter import measure

# Accepted formats, each under a misleading file name: the format must come from the content.
FORMATS = {
    "wav": "notice.mp3",
    "mp3": "notice.wav",
    "m4a": "voice-memo.txt",
    "ogg": "clip.m4a",
    "webm": "recording.webm",
    "flac": "take.ogg",
    "amr": "phone.mp3",
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of real espeak-ng Mandarin as a WAV."""
    return espeak_wav(tmp_path_factory.mktemp("speech"), SPEECH_TEXT)


@pytest.fixture(scope="module")
def samples(speech: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The speech encoded in every accepted format."""
    work = tmp_path_factory.mktemp("formats")
    return {fmt: convert(speech, work / f"speech.{fmt}", fmt).read_bytes() for fmt in FORMATS}


def upload(client: Any, token: str, data: bytes, name: str, lang: str = "zh", **form: str) -> Any:
    """POST a file to /api/v1/clips (body encoded here, in memory: the test client would spill big ones to disk)."""
    upload_file = FileStorage(io.BytesIO(data), filename=name, content_type="application/octet-stream")
    boundary, body = encode_multipart({"file": upload_file, **form})
    return client.post(
        "/api/v1/clips",
        data=body,
        headers=auth(token, lang),
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def stored_files(app: Any) -> list[Path]:
    """Every file in the media store."""
    return [p for p in app.extensions["platform"].media_store.root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_comes_out_at_the_target(
    client: Any, tokens: dict[str, str], samples: dict[str, bytes], fmt: str
) -> None:
    response = upload(client, tokens["operator"], samples[fmt], FORMATS[fmt], title="村委会通知")
    assert response.status_code == 201, response.get_data(as_text=True)
    clip = response.get_json()
    assert clip["source"] == "upload"
    assert clip["source_format"] == fmt
    assert clip["format"] == "mp3"
    assert clip["title"] == "村委会通知"
    path = client.application.extensions["platform"].media_store.path(clip["sha256"])
    reading = measure(path)  # the independent meter, on what is stored and sent to speakers
    assert abs(reading.integrated - -16.0) <= 0.5, reading
    assert reading.true_peak <= -1.4, reading
    assert abs(reading.duration * 1000 - clip["duration_ms"]) < 100
    assert 3000 < clip["duration_ms"] < 15000
    assert abs(clip["loudness_lufs"] - reading.integrated) < 0.2
    assert len(clip["waveform"]) >= 50
    assert max(clip["waveform"]) <= 1.0


def test_wrapped_clip_is_longer_and_still_normalized(
    client: Any, tokens: dict[str, str], samples: dict[str, bytes]
) -> None:
    plain = upload(client, tokens["admin"], samples["wav"], "a.wav").get_json()
    wrapped = upload(
        client, tokens["admin"], samples["wav"], "a.wav", wrap_chime_before="1", wrap_repeat="2", wrap_gap_s="1"
    ).get_json()
    assert wrapped["sha256"] != plain["sha256"]
    assert wrapped["duration_ms"] > 2 * plain["duration_ms"] + 1000
    reading = measure(client.application.extensions["platform"].media_store.path(wrapped["sha256"]))
    assert abs(reading.integrated - -16.0) <= 0.5


def _tone(seconds: float, amplitude: float = 0.3) -> bytes:
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    return _wav_bytes(amplitude * np.sin(2 * np.pi * 440 * t), rate)


def _wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return write_wav(Path(tmp) / "x.wav", signal, rate).read_bytes()


def _bad_inputs(samples: dict[str, bytes]) -> dict[str, tuple[bytes, str, int, str]]:
    png = b"\x89PNG\r\n\x1a\n" + bytes(2000)
    return {
        "not audio (PNG named .mp3)": (png, "notice.mp3", 415, "media.not_audio"),
        "not audio (text)": ("各位村民请注意".encode() * 50, "notice.wav", 415, "media.not_audio"),
        "not audio (zip)": (b"PK\x03\x04" + bytes(4000), "notice.m4a", 415, "media.not_audio"),
        "empty": (b"", "empty.wav", 422, "media.empty"),
        "truncated flac": (samples["flac"][: len(samples["flac"]) // 3], "cut.flac", 422, "media.corrupt"),
        "corrupt ogg": (samples["ogg"][:200] + bytes(5000), "bad.ogg", 422, "media.corrupt"),
        "too short": (_tone(0.3), "beep.wav", 422, "media.too_short"),
        "silent": (_wav_bytes(np.zeros(16000 * 3), 16000), "silence.wav", 422, "media.silent"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not audio (PNG named .mp3)",
        "not audio (text)",
        "not audio (zip)",
        "empty",
        "truncated flac",
        "corrupt ogg",
        "too short",
        "silent",
    ],
)
def test_bad_uploads_store_nothing(client: Any, tokens: dict[str, str], samples: dict[str, bytes], case: str) -> None:
    data, name, status, code = _bad_inputs(samples)[case]
    before = count(client.application, AuditEvent)
    error = assert_error(upload(client, tokens["admin"], data, name), status, code)
    assert error["message"]
    en = assert_error(upload(client, tokens["admin"], data, name, "en"), status, code)
    assert en["message"] != error["message"]
    assert count(client.application, Clip) == 0
    assert count(client.application, AuditEvent) == before
    assert stored_files(client.application) == []


def test_missing_file_field(client: Any, tokens: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/clips", data={"title": "x"}, headers=auth(tokens["admin"]), content_type="multipart/form-data"
    )
    assert_error(response, 422, "file_required")


def test_size_and_duration_limits(tmp_path: Path, database_url: str, samples: dict[str, bytes]) -> None:
    app = make_app(
        tmp_path / "limits", database_url, MAX_UPLOAD_MB=1, MAX_DURATION_S=5, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}"
    )
    try:
        tokens = seed_county(app)
        client = app.test_client()
        long_speech = samples["wav"]  # about 9 s: over the 5 s limit
        assert_error(upload(client, tokens["admin"], long_speech, "long.wav"), 413, "media.too_long")
        big = _wav_bytes(0.2 * np.random.default_rng(1).standard_normal(16000 * 40), 16000)  # 1.3 MB
        assert_error(upload(client, tokens["admin"], big, "big.wav"), 413, "media.too_large")
        huge = b"RIFF" + bytes(3 * 1024 * 1024)  # over the request limit itself
        assert_error(upload(client, tokens["admin"], huge, "huge.wav"), 413)
        assert count(app, Clip) == 0
        assert stored_files(app) == []
    finally:
        app.extensions["platform"].close()


def test_clipped_input_is_accepted_with_a_warning(client: Any, tokens: dict[str, str], speech: Path) -> None:
    from tests.media.conftest import read_wav_mono

    loud = np.clip(read_wav_mono(speech, 16000) * 30, -1, 1)
    response = upload(client, tokens["admin"], _wav_bytes(loud, 16000), "loud.wav")
    assert response.status_code == 201
    assert "media.clipped_input" in response.get_json()["warnings"]
