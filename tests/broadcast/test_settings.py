"""Settings are declared once, documented, and layered defaults < file < environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcast.settings import SETTINGS, load_settings, markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented_with_its_default() -> None:
    text = DOCS.read_text()
    for setting in SETTINGS:
        default = setting.default if setting.default != "" else "(empty)"
        assert f"| `BROADCAST_{setting.name}` | `{default}` |" in text, setting.name
    assert text == markdown(), "docs/settings.md is stale: run `broadcast settings > docs/settings.md`"


def test_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.toml").write_text('quiet_hours = "23:00-05:00"\nmqtt_port = 2000\n')
    monkeypatch.setenv("BROADCAST_MQTT_PORT", "2001")
    values = load_settings(tmp_path, {"DEFAULT_VOLUME": "70"})
    assert values["QUIET_HOURS"] == "23:00-05:00"
    assert values["MQTT_PORT"] == 2001
    assert values["DEFAULT_VOLUME"] == 70
    assert values["DATABASE_URL"] == f"sqlite:///{tmp_path / 'broadcast.db'}"


@pytest.mark.parametrize(("name", "raw"), [("MQTT_PORT", "18x3"), ("ALERT_TONE_S", "eight")])
def test_a_malformed_number_is_a_clear_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    from broadcast.errors import BroadcastError

    monkeypatch.setenv(f"BROADCAST_{name}", raw)
    with pytest.raises(BroadcastError) as caught:
        load_settings(tmp_path)
    assert caught.value.code == "invalid_setting"
    assert f"BROADCAST_{name}" in caught.value.zh
    assert raw in caught.value.zh


@pytest.mark.parametrize("seconds", ["0", "0.5", "26"])
def test_an_attention_tone_outside_1_to_25_s_is_refused(seconds: str) -> None:
    from broadcast.errors import BroadcastError
    from broadcast.platform import media_config

    values = load_settings(Path("/nonexistent-instance"), {"ALERT_TONE_S": seconds})
    with pytest.raises(BroadcastError, match="ALERT_TONE_S"):
        media_config(values)
    assert media_config(load_settings(Path("/nonexistent-instance"), {"ALERT_TONE_S": "2"})).attention_tone_s == 2.0
