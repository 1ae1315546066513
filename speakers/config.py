"""What a speaker needs to run (printed as JSON by `broadcast speakers provision ID`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)

PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


GRID_MIN_DIGITS = 13  # a grid extends its village's 12-digit 统计用区划代码 with digits of its own


def region_chain_problem(codes: list[str]) -> str | None:
    """Why `codes` is not a grid followed by its ancestors (each code extending the next one's), or None."""
    if len(codes) < 2 or len(set(codes)) != len(codes) or not all(isinstance(c, str) and c.isdigit() for c in codes):
        return "a grid and its ancestors: at least two distinct digit codes"
    if len(codes[0]) < GRID_MIN_DIGITS:
        return f"the first code must be a grid (at least {GRID_MIN_DIGITS} digits), not {codes[0]}"
    for child, parent in itertools.pairwise(codes):
        significant = parent.rstrip("0")
        if not significant or not child.startswith(significant):
            return f"{parent} is not an ancestor of {child}"
    return None


def check_regions(codes: list[str]) -> list[str]:
    """A speaker's region chain (grid first, then every ancestor), or a clear error."""
    problem = region_chain_problem(list(codes))
    if problem is not None:
        raise SpeakerError(
            "speakers.bad_regions",
            f"区域链不合法：{problem}（应为网格及其各级上级，网格在前）。",
            f"Invalid region chain: {problem} (the grid first, then each ancestor).",
        )
    return list(codes)


def parse_quiet_hours(spans: list[str]) -> list[tuple[int, int]]:
    """Turn ["22:00-06:00", ...] into (start minute, end minute) pairs; a span may cross midnight."""
    out: list[tuple[int, int]] = []
    for span in spans:
        m = _HHMM.match(span)
        if not m:
            raise SpeakerError(
                "speakers.bad_quiet_hours",
                f"静默时段应写作 HH:MM-HH:MM，而不是 {span!r}",
                f"Quiet hours are HH:MM-HH:MM, not {span!r}",
            )
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        out.append((h1 * 60 + m1, h2 * 60 + m2))
    return out


def in_quiet_hours(spans: list[tuple[int, int]], unix_time: float, utc_offset_minutes: int) -> bool:
    """True when `unix_time` (local time = UTC + offset) falls inside one of the spans."""
    minute = int((unix_time // 60 + utc_offset_minutes) % 1440)
    for start, end in spans:
        if start <= end:
            if start <= minute < end:
                return True
        elif minute >= start or minute < end:
            return True
    return False


@dataclass
class AgentConfig:
    """Everything one speaker agent needs; made by the server at provisioning, kept on the device."""

    speaker_id: str  # the speaker's id (also its MQTT client id)
    broker_url: str  # mqtt://host:port or mqtts://host:port
    username: str | None  # its own broker account (None on an anonymous test broker)
    password: str | None
    topic_prefix: str  # the deployment's topic prefix, e.g. "vb"
    regions: list[str]  # its grid and every ancestor region code (grid, village, township, county)
    server_keys: list[str]  # trusted server public keys (base64 Ed25519), current first
    state_dir: Path  # anti-replay state, keys, queue, schedule and unsent receipts live here
    cache_dir: Path  # media cache
    cache_cap_bytes: int = 512 * 1024 * 1024  # LRU size cap of the media cache
    quiet_hours: list[str] = field(default_factory=list)  # ["22:00-06:00"]: only emergency plays then
    utc_offset_minutes: int = 480  # local time zone of quiet hours (China: UTC+8, no DST)
    max_volume: int = 100  # hard cap; emergencies always play at exactly this volume
    default_volume: int = 80  # volume before any volume command
    heartbeat_s: float = 60.0  # how often retained state is republished
    time_sync_interval_s: float = 300.0  # how often the clock offset is re-measured
    arm_lead_ms: int = 250  # how early a play is handed to the output before its start time
    clean_session: bool = False  # False: the broker queues QoS 1 commands while the speaker is offline
    keepalive_s: int = 30  # MQTT keepalive; the last will fires after about 1.5x this without traffic
    ca_file: str | None = None  # CA bundle on the device for mqtts:// and https:// (None = system CAs)
    ca_cert: str | None = None  # trusted CA certificate(s) as PEM text, given at provisioning (with ca_file)
    max_clock_skew_s: float = 300.0  # a command issued further in the future than this is refused
    fetch_timeout_s: float = 30.0  # per HTTP request of the media cache
    rejected_reports_per_minute: int = 30  # rejected receipts sent at most this often (all are counted)
    reconnect_max_s: float = 60.0  # longest wait between reconnection attempts (backoff with jitter)
    ack_leisure_s: float = 1.0  # region-wide commands are acknowledged after a random 0..this delay (no implosion)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.cache_dir = Path(self.cache_dir)
        if not self.server_keys:
            raise SpeakerError(
                "speakers.no_server_key", "配置中没有服务器公钥。", "The configuration has no server public key."
            )
        if not 0 <= self.max_volume <= 100 or not 0 <= self.default_volume <= 100:
            raise SpeakerError("speakers.bad_volume", "音量应在 0 到 100 之间。", "Volumes are 0 to 100.")
        parse_quiet_hours(self.quiet_hours)
        if self.ca_cert is not None and PEM_CERTIFICATE not in self.ca_cert:
            raise SpeakerError(
                "speakers.bad_ca_cert",
                "ca_cert 应为 PEM 格式的 CA 证书。",
                "ca_cert must be a PEM CA certificate.",
            )

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context for mqtts:// and https://: verifies the peer against ca_cert/ca_file, else system CAs.

        Raises:
            SpeakerError: the CA file or certificate cannot be read.
        """
        try:
            if self.ca_cert is None and self.ca_file is None:
                return ssl.create_default_context()
            return ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise SpeakerError(
                "speakers.bad_ca_cert", f"无法读取 CA 证书：{exc}", f"Cannot read the CA certificate: {exc}"
            ) from exc

    def with_regions(self, codes: list[str]) -> AgentConfig:
        """This configuration with a new region chain (the speaker was moved); the chain is checked first."""
        return dataclasses.replace(self, regions=check_regions(codes))

    def quiet_spans(self) -> list[tuple[int, int]]:
        """Quiet hours as minute spans."""
        return parse_quiet_hours(self.quiet_hours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        data = dataclasses.asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["cache_dir"] = str(self.cache_dir)
        return data

    def to_json(self) -> str:
        """Pretty JSON for the device's config file."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Build from a dict; unknown keys are ignored with a warning (a newer server may add some)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            logger.warning("ignoring unknown config keys: %s", ", ".join(unknown))
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise SpeakerError(
                "speakers.bad_config", f"终端配置不完整：{exc}", f"Incomplete speaker configuration: {exc}"
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> AgentConfig:
        """Parse the JSON printed by provisioning."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpeakerError(
                "speakers.bad_config", f"终端配置不是有效的 JSON：{exc}", f"The configuration is not JSON: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise SpeakerError("speakers.bad_config", "终端配置应为 JSON 对象。", "The configuration is a JSON object.")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        """Read a config file."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
