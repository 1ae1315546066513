"""Every setting of the server, declared once with its default and help text."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broadcast.errors import BroadcastError

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
    Setting(
        "SPEAKER_MQTT_URL",
        "",
        "Broker URL speakers are given (mqtt:// or mqtts://host:port); empty: derived. Never carries credentials.",
    ),
    Setting("SPEAKER_CA_FILE", "", "PEM CA certificate put into every provisioned speaker's config (mqtts, https)."),
    Setting("MOSQUITTO_DIR", "", "Folder of the Mosquitto files; when set, provisioning rewrites them there."),
    Setting("MOSQUITTO_SERVER_LISTENER", "127.0.0.1:1884", "Mosquitto listener of the server account: ADDR:PORT."),
    Setting("MOSQUITTO_SPEAKER_LISTENER", "1883", "Mosquitto listener of speakers: PORT (any address) or ADDR:PORT."),
    Setting("MOSQUITTO_TLS_LISTENER", "", "Mosquitto TLS listener of the speakers: PORT or ADDR:PORT; empty: none."),
    Setting("MOSQUITTO_CERTFILE", "", "Certificate (PEM, with its chain) of the Mosquitto TLS listener."),
    Setting("MOSQUITTO_KEYFILE", "", "Private key (PEM) of the Mosquitto TLS listener."),
    # Broadcasting rules
    Setting("TIMEZONE", "Asia/Shanghai", "Local time zone for quiet hours and the console."),
    Setting("QUIET_HOURS", "22:00-06:00", "Local hours when only emergencies play (empty: none)."),
    Setting("START_LEAD_MS", 1500, "Delay before an immediate broadcast starts, so all speakers start together.", int),
    Setting("COMMAND_TTL_S", 900, "How long after its start a routine play may still begin before it is missed.", int),
    Setting("MEDIA_URL_TTL_S", 172800, "Lifetime of the signed media URLs sent to speakers.", int),
    Setting("DEFAULT_VOLUME", 80, "Volume (0-100) of a broadcast that names none.", int),
    Setting("MAX_REPEAT", 10, "Largest repeat count a broadcast may ask for.", int),
    Setting(
        "APPROVAL_REQUIRED",
        "",
        "Roles whose broadcasts and schedules wait for approval (先审后播): e.g. village_head, or role@REGION_CODE.",
    ),
    Setting("SCHEDULE_PUSH_S", 60, "How often the worker sends speakers changed schedule snapshots.", int),
    Setting(
        "SCHEDULE_MIN_LEAD_S",
        60,
        "Plays starting sooner than this travel only in their own command, not in snapshots.",
        int,
    ),
    Setting("RESEND_FIRST_S", 3.0, "A speaker that has not acknowledged a command gets it again after this.", float),
    Setting("RESEND_MAX_S", 60.0, "Longest wait between re-sends to one speaker (the wait doubles up to it).", float),
    Setting(
        "INLINE_MEDIA_MAX_BYTES",
        65536,
        "Emergency and urgent clips up to this size ride inside the command (no download); 0 turns it off.",
        int,
    ),
    Setting("LEASE_POLL_S", 2.0, "How often a standby worker tries to take the lease of a dead one.", float),
    Setting("SCHEDULE_MAX_PER_DAY", 48, "Most plays one schedule may make in a day (a denser rule is refused).", int),
    Setting(
        "SCHEDULE_GRACE_S",
        300,
        "Default misfire grace: a routine occurrence later than this is recorded missed.",
        float,
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
    # Warnings (预警, docs/alerts.md)
    Setting("ALERT_HMAC_SECRET", "", "Secret of the X-Signature (HMAC-SHA256) on CAP posts; empty: tokens only."),
    Setting("ALERT_POLICY", "", "Handling table (JSON) of levels and severity×urgency×certainty; empty: defaults."),
    Setting("ALERT_GEOCODE_NAMES", "行政区划代码,CPEAS Geographic Code", "CAP geocode names read as region codes."),
    Setting("ALERT_REPEAT", 3, "Times an alert's message is spoken after the attention tone.", int),
    Setting(
        "ALERT_TONE_S",
        2.0,
        "Length of the attention tone before an alert's speech, in seconds (1-25; the speech follows the tone).",
        float,
    ),
    Setting(
        "ALERT_TONE_LEAD_MS",
        700,
        "Delay before an alert's attention tone starts (speakers hold the tone: only its small command must arrive).",
        int,
    ),
    Setting("ALERT_VOLUME", 100, "Forced volume (0-100) of alert broadcasts.", int),
    Setting("ALERT_CANCEL_NOTICE", 1, "1: play a short 解除 notice when an alert is cancelled; 0: stop silently.", int),
    Setting("ALERT_FEEDS", "", "Atom/RSS feeds of CAP entries (JSON list of {url, interval_s, username, password})."),
    Setting("ALERT_FEED_STALL_S", 900, "A feed without a good answer for this long raises an alarm.", int),
    Setting("ALERT_TRIGGERS", "", "Sensor trigger rules (JSON object by source name), see docs/alerts.md."),
    # Security
    Setting("LOGIN_MAX_FAILURES", 5, "Failed logins of one name from one address before each try must wait.", int),
    Setting("LOGIN_LOCK_S", 900, "Longest wait between login tries (the wait doubles from 30 s up to this).", int),
    Setting("LOGIN_RATE_LIMIT", "30/minute", "Login form posts per client address (any name)."),
    Setting("API_RATE_LIMIT", "60/minute", "API writes (POST, PUT, PATCH, DELETE) per token or console user."),
    Setting("API_READ_RATE_LIMIT", "600/minute", "API reads (GET) per token or console user."),
    Setting("RATE_LIMIT_STORAGE", "", "Where rate-limit counters live (e.g. redis://host:6379); empty: each process."),
    Setting("SESSION_HOURS", 12, "Console session lifetime in hours.", int),
    Setting("LANGUAGE", "zh", "Console language of users who chose none, and of API messages by default (zh or en)."),
    Setting(
        "SESSION_COOKIE_SECURE",
        "auto",
        "Send the session cookie over HTTPS only: auto (when PUBLIC_URL is https), true, false.",
    ),
    Setting(
        "PROXY_FIX", 0, "Number of reverse proxies in front of the web tier whose X-Forwarded-* headers to trust.", int
    ),
    # Logs
    Setting("LOG_FILE", "", "Log file (rotated daily, 14 kept); empty: logs/broadcast.log in the instance folder."),
    Setting("LOG_LEVEL", "WARNING", "Least severe log level written (DEBUG, INFO, WARNING, ERROR)."),
)

BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, value: Any) -> Any:
    try:
        if setting.type is int:
            return int(value)
        if setting.type is float:
            return float(value)
    except (TypeError, ValueError):
        kind_zh, kind_en = ("整数", "an integer") if setting.type is int else ("数字", "a number")
        raise BroadcastError(
            "invalid_setting",
            f"设置 BROADCAST_{setting.name} 的值无效：{value!r:.40}（应为{kind_zh}）",
            f"Setting BROADCAST_{setting.name} is invalid: {value!r:.40} (expected {kind_en})",
        ) from None
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
