"""Pin: the server's default loudness target is -16 LUFS, and a clip made through the API measures it."""

from __future__ import annotations

from typing import Any

from broadcast.settings import SETTINGS
from tests.broadcast.conftest import auth, seed_county
from tests.meter import measure


def test_the_default_target_is_minus_16_lufs() -> None:
    defaults = {setting.name: setting.default for setting in SETTINGS}
    assert defaults["TARGET_LUFS"] == -16.0


def test_a_clip_made_with_default_settings_measures_minus_16(app: Any) -> None:
    tokens = seed_county(app)
    reply = app.test_client().post(
        "/api/v1/clips", json={"text": "各位村民请注意，今天下午有大风。"}, headers=auth(tokens["admin"])
    )
    assert reply.status_code == 201, reply.get_data(as_text=True)
    clip = reply.get_json()
    reading = measure(app.extensions["platform"].media_store.path(clip["sha256"]))
    assert abs(reading.integrated - -16.0) <= 0.5, reading
    assert abs(clip["loudness_lufs"] - -16.0) <= 0.5, clip
