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
