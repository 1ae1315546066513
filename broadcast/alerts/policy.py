"""What to do with a CAP alert: status, msgType, duplicates, expiry and a settable handling table."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from broadcast.alerts.errors import AlertError
from broadcast.alerts.levels import LEVELS, level_of
from broadcast.alerts.model import CERTAINTIES, SEVERITIES, URGENCIES, CapAlert, Info

logger = logging.getLogger(__name__)
ACTIONS = ("broadcast", "held", "ignored", "duplicate", "cancelled", "updated")
HANDLINGS = ("auto", "hold", "log")
TEST_STATUSES = ("Exercise", "Test")


@dataclass(frozen=True)
class Rule:
    """One row of the handling table: sets of severity, urgency and certainty (None: any) → handling."""

    severity: frozenset[str] | None
    urgency: frozenset[str] | None
    certainty: frozenset[str] | None
    handling: str

    def matches(self, info: Info) -> bool:
        """True when the info's severity, urgency and certainty all fall in this row."""
        return all(
            allowed is None or value in allowed
            for allowed, value in (
                (self.severity, info.severity),
                (self.urgency, info.urgency),
                (self.certainty, info.certainty),
            )
        )


@dataclass(frozen=True)
class PolicyTable:
    """Stated Chinese levels → handling, else the first matching rule, else the default."""

    levels: dict[str, str] = field(
        default_factory=lambda: {"red": "auto", "orange": "auto", "yellow": "hold", "blue": "hold"}
    )
    rules: tuple[Rule, ...] = (
        Rule(None, frozenset({"Past"}), None, "log"),
        Rule(None, None, frozenset({"Unlikely"}), "log"),
        Rule(
            frozenset({"Extreme", "Severe"}),
            frozenset({"Immediate", "Expected"}),
            frozenset({"Observed", "Likely"}),
            "auto",
        ),
    )
    default: str = "hold"

    def handling(self, info: Info) -> tuple[str, str]:
        """The handling of an info and why (the rule that chose it)."""
        level, stated = level_of(info)
        if stated and level in self.levels:
            return self.levels[level], f"level_{level}"
        for n, rule in enumerate(self.rules, 1):
            if rule.matches(info):
                return rule.handling, f"rule_{n}"
        return self.default, "default"

    @classmethod
    def from_json(cls, text: str) -> PolicyTable:
        """A table from the ALERT_POLICY setting (empty: the defaults); see docs/alerts.md."""
        if not text.strip():
            return cls()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise _bad(f"不是有效的 JSON（{exc}）", f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise _bad("必须是 JSON 对象", "must be a JSON object")
        base = cls()
        levels = {**base.levels, **_handlings(data.get("levels", {}), LEVELS, "levels")}
        rules = base.rules
        if "rules" in data:
            if not isinstance(data["rules"], list):
                raise _bad("rules 必须是列表", "rules must be a list")
            rules = tuple(_rule(row) for row in data["rules"])
        default = _handling(data.get("default", base.default), "default")
        return cls(levels=levels, rules=rules, default=default)


def _bad(zh: str, en: str) -> AlertError:
    return AlertError(
        "invalid_policy", f"预警处置表设置无效：{zh}。", f"Invalid alert policy table: {en}.", kind="invalid"
    )


def _handling(value: object, where: str) -> str:
    if value not in HANDLINGS:
        raise _bad(
            f"{where} 的处置 {value!s:.20} 无效（auto、hold、log）", f"{where}: {value!s:.20} is not auto/hold/log"
        )
    return str(value)


def _handlings(data: object, keys: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(data, dict) or any(k not in keys for k in data):
        raise _bad(f"{where} 的键只能是 {'、'.join(keys)}", f"{where} keys must be among {', '.join(keys)}")
    return {k: _handling(v, f"{where}.{k}") for k, v in data.items()}


def _set(row: dict[str, Any], name: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
    value = row.get(name, "*")
    if value == "*":
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or any(v not in allowed for v in values):
        raise _bad(f"规则的 {name} 须取自 {'、'.join(allowed)} 或 *", f"rule {name} must be '*' or among {allowed}")
    return frozenset(values)


def _rule(row: object) -> Rule:
    if not isinstance(row, dict):
        raise _bad("每条规则必须是对象", "each rule must be an object")
    return Rule(
        _set(row, "severity", SEVERITIES),
        _set(row, "urgency", URGENCIES),
        _set(row, "certainty", CERTAINTIES),
        _handling(row.get("action"), "rule.action"),
    )


@dataclass(frozen=True)
class Decision:
    """The policy's answer: an action from ACTIONS, a reason code, the info to speak and its audience."""

    action: str
    reason: str
    info: Info | None = None
    level: str | None = None
    audience: str = "public"  # public | test (speakers flagged for tests only)


def choose_info(alert: CapAlert) -> Info | None:
    """The info to speak: zh-CN first, then any Chinese, then the first (CAP's default language is en-US)."""
    if not alert.infos:
        return None
    for wanted in ("zh-cn", "zh-hans", "zh"):
        for info in alert.infos:
            if info.language.lower() == wanted or (wanted == "zh" and info.language.lower().startswith("zh")):
                return info
    return alert.infos[0]


def decide(alert: CapAlert, *, now: datetime, duplicate: bool, table: PolicyTable) -> Decision:
    """Decide from the message alone (area and references are the service's part)."""
    audience = "test" if alert.status in TEST_STATUSES else "public"
    if duplicate:
        return Decision("duplicate", "duplicate", audience=audience)
    if alert.status in ("System", "Draft"):
        return Decision("ignored", f"status_{alert.status.lower()}", audience=audience)
    if alert.msg_type in ("Ack", "Error"):
        return Decision("ignored", f"msg_type_{alert.msg_type.lower()}", audience=audience)
    info = choose_info(alert)
    level = level_of(info)[0] if info else None
    if alert.msg_type == "Cancel":
        if not alert.references:
            return Decision("ignored", "cancel_without_references", info, level, audience)
        return Decision("cancelled", "cancel", info, level, audience)
    if info is None:
        return Decision("ignored", "no_info", audience=audience)
    if info.expires is not None and info.expires <= now:
        return Decision("ignored", "expired", info, level, audience)
    handling, why = table.handling(info)
    if handling == "log":
        return Decision("ignored", f"policy_log:{why}", info, level, audience)
    if handling == "hold":
        return Decision("held", f"policy_hold:{why}", info, level, audience)
    if alert.msg_type == "Update" and alert.references:
        return Decision("updated", f"policy_auto:{why}", info, level, audience)
    return Decision("broadcast", f"policy_auto:{why}", info, level, audience)
