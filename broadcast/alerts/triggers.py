"""Local sensor triggers (reservoir gauge, fire detector, flood sensor): signed readings, rules, hysteresis."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime

from broadcast.alerts.errors import AlertError
from broadcast.alerts.levels import LEVELS

SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_READING_BYTES = 4096
DEFAULT_SKEW_S = 300.0


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex>` of HMAC-SHA256(secret, body); an empty secret never matches."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[7:].strip().lower())


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header value for a body (for senders and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TriggerRule:
    """What one sensor source does when its value crosses the threshold."""

    source: str
    name: str
    secret: str
    threshold: float
    hysteresis: float
    targets: tuple[str, ...]
    direction: str = "above"  # above: fire when value >= threshold; below: when value <= threshold
    event: str = "传感器报警"
    level: str = "red"
    text: str = "{name}监测值{value}{unit}，已达到{threshold}{unit}的警戒值，请注意安全，按照指引转移。"
    unit: str = ""
    clip_id: int | None = None
    max_skew_s: float = DEFAULT_SKEW_S

    def message(self, value: float) -> str:
        """The spoken text for a reading."""
        return self.text.format(name=self.name, value=_plain(value), threshold=_plain(self.threshold), unit=self.unit)

    def step(self, active: bool, value: float) -> tuple[bool, bool]:
        """(fire now, active after) for a reading: fire once on crossing, re-arm only past the hysteresis band."""
        crossed = value >= self.threshold if self.direction == "above" else value <= self.threshold
        cleared = (
            value < self.threshold - self.hysteresis
            if self.direction == "above"
            else value > self.threshold + self.hysteresis
        )
        if not active:
            return crossed, crossed
        return False, not cleared


def _plain(value: float) -> str:
    return f"{value:g}"


def _bad(zh: str, en: str) -> AlertError:
    return AlertError("invalid_triggers", f"传感器触发规则设置无效：{zh}。", f"Invalid sensor trigger rules: {en}.")


def _float(row: dict, key: str, source: str, default: float | None = None) -> float:
    value = row.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{source} 的 {key} 必须是数字", f"{source}: {key} must be a number")
    return float(value)


def parse_rules(text: str) -> dict[str, TriggerRule]:
    """Rules from the ALERT_TRIGGERS setting: {"<source>": {"threshold", "hysteresis", "targets", ...}}."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad(f"不是有效的 JSON（{exc}）", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _bad("必须是以来源名为键的 JSON 对象", "must be a JSON object keyed by source name")
    rules = {}
    for source, row in data.items():
        if not SOURCE.match(source) or not isinstance(row, dict):
            raise _bad(f"来源名 {source[:40]} 无效", f"bad source name or rule: {source[:40]}")
        targets = row.get("targets")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise _bad(f"{source} 需要 targets（区域代码或终端编号列表）", f"{source}: targets must be a list of ids")
        if row.get("direction", "above") not in ("above", "below"):
            raise _bad(f"{source} 的 direction 只能是 above 或 below", f"{source}: direction is above or below")
        if row.get("level", "red") not in LEVELS:
            raise _bad(f"{source} 的 level 只能是 {'、'.join(LEVELS)}", f"{source}: level is one of {LEVELS}")
        if not isinstance(row.get("secret"), str) or len(row["secret"]) < 16:
            raise _bad(f"{source} 需要至少 16 个字符的 secret", f"{source}: a secret of 16+ characters is required")
        clip_id = row.get("clip_id")
        if clip_id is not None and (isinstance(clip_id, bool) or not isinstance(clip_id, int)):
            raise _bad(f"{source} 的 clip_id 必须是整数", f"{source}: clip_id must be an integer")
        hysteresis = _float(row, "hysteresis", source, 0.0)
        if hysteresis < 0:
            raise _bad(f"{source} 的 hysteresis 不能为负", f"{source}: hysteresis may not be negative")
        rule = TriggerRule(
            source=source,
            name=str(row.get("name", source))[:60],
            secret=row["secret"],
            threshold=_float(row, "threshold", source),
            hysteresis=hysteresis,
            targets=tuple(targets),
            direction=row.get("direction", "above"),
            event=str(row.get("event", TriggerRule.event))[:60],
            level=row.get("level", "red"),
            text=str(row.get("text", TriggerRule.text))[:300],
            unit=str(row.get("unit", ""))[:12],
            clip_id=clip_id,
            max_skew_s=_float(row, "max_skew_s", source, DEFAULT_SKEW_S),
        )
        try:
            rule.message(rule.threshold)
        except (KeyError, IndexError, ValueError):
            raise _bad(f"{source} 的 text 只能使用 {{name}}、{{value}}、{{threshold}}、{{unit}}", "bad text") from None
        rules[source] = rule
    return rules


@dataclass(frozen=True)
class Reading:
    """One sensor reading: its value and the sensor's own time (unix seconds)."""

    value: float
    at: float


def parse_reading(body: bytes) -> Reading:
    """A reading from JSON {"value": number, "at": ISO 8601 with offset or unix seconds}."""
    if len(body) > MAX_READING_BYTES:
        raise AlertError("too_large", "传感器数据过大。", "The sensor reading is too large.")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AlertError("invalid_reading", "传感器数据必须是 JSON 对象。", "The reading must be a JSON object.")
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertError("invalid_reading", "传感器数据缺少数值 value。", "The reading needs a numeric `value`.")
    at = data.get("at")
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return Reading(float(value), float(at))
    if isinstance(at, str):
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return Reading(float(value), moment.timestamp())
    raise AlertError(
        "invalid_reading",
        "传感器数据的时间 at 无效（带时区的 ISO 8601 或 Unix 秒）。",
        "The reading's `at` must be ISO 8601 with an offset, or unix seconds.",
    )
