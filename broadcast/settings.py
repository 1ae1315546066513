"""Every setting of the server, declared once with its default and help text."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "BROADCAST_"


@dataclass(frozen=True)
class Setting:
    """One setting: its name (without the BROADCAST_ prefix), default, type and help text."""

    name: str
    default: Any
    help: str
    type: type = str


SETTINGS: tuple[Setting, ...] = (
    # Where things live
    Setting("INSTANCE", "instance", "Instance folder: database, keys, media, logs (env only)."),
    Setting("DATABASE_URL", "", "SQLAlchemy URL; empty means SQLite file broadcast.db in the instance folder."),
    Setting("MEDIA_DIR", "", "Folder of stored clips; empty means media/ in the instance folder."),
    Setting("SECRET_KEY", "", "Session and URL-signing secret; empty means the one made by `broadcast init`."),
    Setting("PUBLIC_URL", "", "Base URL speakers use to fetch media, e.g. https://gb.example.cn; empty: the run URL."),
    # Messaging
    Setting("MQTT_URL", "", "External broker URL (mqtt://host:port); empty runs the embedded broker."),
    Setting("MQTT_HOST", "127.0.0.1", "Address the embedded broker listens on (0.0.0.0 for real speakers)."),
    Setting("MQTT_PORT", 1884, "Port of the embedded broker.", int),
    Setting("MQTT_USERNAME", "", "Server account on the broker (empty: anonymous)."),
    Setting("MQTT_PASSWORD", "", "Password of the server account on the broker."),
    Setting("MQTT_TIMEOUT_S", 3.0, "Longest wait for the broker to accept a connection or a message.", float),
    Setting("TOPIC_PREFIX", "vb", "First level of every MQTT topic, so several deployments can share a broker."),
    # Broadcasting rules
    Setting("TIMEZONE", "Asia/Shanghai", "Local time zone for quiet hours and the console."),
    Setting("QUIET_HOURS", "22:00-06:00", "Local hours when only emergencies play (empty: none)."),
    Setting("START_LEAD_MS", 1500, "Delay before an immediate broadcast starts, so all speakers start together.", int),
    Setting("COMMAND_TTL_S", 900, "How long after its start a routine play may still begin before it is missed.", int),
    Setting("MEDIA_URL_TTL_S", 172800, "Lifetime of the signed media URLs sent to speakers.", int),
    Setting("DEFAULT_VOLUME", 80, "Volume (0-100) of a broadcast that names none.", int),
    Setting("MAX_REPEAT", 10, "Largest repeat count a broadcast may ask for.", int),
    Setting("SCHEDULE_PUSH_S", 60, "How often the worker sends speakers changed schedule snapshots.", int),
    Setting(
        "SCHEDULE_MIN_LEAD_S",
        60,
        "Plays starting sooner than this travel only in their own command, not in snapshots.",
        int,
    ),
    Setting("OFFLINE_AFTER_S", 90, "A speaker silent this long is shown offline even without a last will.", int),
    # Media
    Setting("TARGET_LUFS", -16.0, "Integrated loudness every clip is normalized to (EBU R128).", float),
    Setting("TRUE_PEAK_DBTP", -1.5, "True-peak ceiling of every clip.", float),
    Setting("BITRATE_KBPS", 64, "MP3 bitrate of stored clips.", int),
    Setting("MAX_UPLOAD_MB", 50, "Largest accepted upload.", int),
    Setting("MAX_DURATION_S", 1800, "Longest accepted recording.", int),
    Setting("MAX_TEXT_CHARS", 2000, "Longest accepted notice text.", int),
    Setting("TTS_ENGINES", "edge,espeak", "TTS fallback chain, first that answers speaks."),
    Setting("EDGE_VOICE", "zh-CN-XiaoxiaoNeural", "edge-tts voice used when it answers."),
    Setting("PIPER_MODEL", "", "Path of a piper .onnx voice; enables the piper engine."),
    # Security
    Setting("LOGIN_MAX_FAILURES", 5, "Failed logins per user or address before login is locked.", int),
    Setting("LOGIN_LOCK_S", 900, "How long a login lock lasts, seconds.", int),
    Setting("SESSION_HOURS", 12, "Console session lifetime in hours.", int),
    Setting("LANGUAGE", "zh", "Default language of messages (zh or en)."),
)

BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, value: Any) -> Any:
    if setting.type is int:
        return int(value)
    if setting.type is float:
        return float(value)
    return str(value)


def instance_path() -> Path:
    """The instance folder: BROADCAST_INSTANCE or ./instance."""
    return Path(os.environ.get(ENV_PREFIX + "INSTANCE", "instance")).resolve()


def load_settings(instance: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then instance/settings.toml, then BROADCAST_* environment, then overrides."""
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    config_file = instance / "settings.toml"
    if config_file.exists():
        with config_file.open("rb") as fh:
            for key, value in tomllib.load(fh).items():
                name = key.upper()
                if name in BY_NAME:
                    values[name] = _coerce(BY_NAME[name], value)
    for setting in SETTINGS:
        raw = os.environ.get(ENV_PREFIX + setting.name)
        if raw is not None:
            values[setting.name] = _coerce(setting, raw)
    for key, value in (overrides or {}).items():
        name = key.upper()
        values[name] = _coerce(BY_NAME[name], value) if name in BY_NAME else value
    values["INSTANCE"] = str(instance)
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{instance / 'broadcast.db'}"
    if not values["MEDIA_DIR"]:
        values["MEDIA_DIR"] = str(instance / "media")
    return values


def markdown() -> str:
    """docs/settings.md, generated from the declarations above (`broadcast settings > docs/settings.md`)."""
    lines = [
        "# Settings",
        "",
        "Every setting is read, in this order (later wins), from its default, the instance file",
        '`instance/settings.toml` (lower-case keys, e.g. `quiet_hours = "22:00-06:00"`), and the environment',
        "variable `BROADCAST_<NAME>`. They are declared once, in `broadcast/settings.py`; this page is generated",
        "from them with `broadcast settings > docs/settings.md`, and a test checks that it is current.",
        "",
        "| name | default | meaning |",
        "|---|---|---|",
    ]
    for setting in SETTINGS:
        default = setting.default if setting.default != "" else "(empty)"
        lines.append(f"| `BROADCAST_{setting.name}` | `{default}` | {setting.help} |")
    return "\n".join(lines) + "\n"
