"""Alerts from people and sensors: confirm or cancel a held alert, the emergency button, sensor triggers."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from broadcast.alerts import AlertError
from broadcast.alerts.triggers import TriggerRule, parse_reading, parse_rules, signature_ok
from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import Alert, TriggerState, User
from broadcast.services import audit, regions
from broadcast.services.alert_records import Outcome, note, policy_table, system_user
from broadcast.services.alert_view import get_visible
from broadcast.services.alerts import drill_speakers, launch, send, stop_alert

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
CONFIRM_ROLES = ("admin", "operator")
CONFIRM_WORDS = "确认播发"
CONFIRM_WORDS_EN = "confirm broadcast"  # the same confirmation for someone who reads the English console
MAX_MANUAL_CHARS = 300


def confirm(session: Session, platform: Platform, alert_id: object, user: User, *, targets: object = None) -> Outcome:
    """An operator releases a held alert (optionally naming the targets an unresolved area lacked)."""
    if user.role not in CONFIRM_ROLES:
        raise forbidden("只有管理员和操作员可以确认预警播发。", "Only admins and operators may release an alert.")
    row = get_visible(session, alert_id, user)  # another region's alert is not found
    if row.state != "held":
        raise BroadcastError(
            "alert.not_held", "该预警不在待确认状态。", "This alert is not waiting for confirmation.", kind="conflict"
        )
    if targets is not None:
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise BroadcastError(
                "invalid_targets", "targets 必须是区域代码或终端编号的列表。", "targets must be a list of ids."
            )
        chosen = list(targets) if row.audience == "public" else drill_speakers(session, list(targets))
        row.region_codes, row.speaker_ids = (chosen, []) if row.audience == "public" else ([], chosen)
    if not row.region_codes and not row.speaker_ids:
        raise BroadcastError(
            "alert.targets_required", "该预警的区域无法识别，请指定播发区域。", "The area is unresolved: give targets."
        )
    # A person's own scope is checked before anything sounds: out of region is their 403, not a held alert.
    regions.resolve_targets(session, row.region_codes + row.speaker_ids, user)
    row.decision = "updated" if row.msg_type == "Update" and row.references else "broadcast"
    row.reason = f"confirmed_by:{user.username}"
    launch(session, platform, row, user, user.username, time.time())
    session.commit()
    return Outcome(row.id, row.decision, row.reason, row.broadcast_id)


def cancel(session: Session, platform: Platform, alert_id: object, user: User) -> Outcome:
    """An operator stops an open alert on every speaker (or drops a held one)."""
    if user.role not in CONFIRM_ROLES:
        raise forbidden("只有管理员和操作员可以撤销预警。", "Only admins and operators may cancel an alert.")
    row = get_visible(session, alert_id, user)  # another region's alert is not found
    if row.state not in ("active", "held"):
        raise BroadcastError("alert.not_open", "该预警已结束。", "This alert is no longer open.", kind="conflict")
    stops = stop_alert(session, row, row, "cancelled", user.username, time.time())
    row.replaced_by = None
    row.reason = f"cancelled_by:{user.username}"
    send(session, platform, stops, None)
    return Outcome(row.id, "cancelled", row.reason, row.broadcast_id)


def manual(
    session: Session, platform: Platform, user: User, *, text: object, targets: object, confirm_words: object
) -> Outcome:
    """The emergency button: an operator's own warning text, sent at emergency priority after a typed confirmation."""
    if user.role not in CONFIRM_ROLES:
        raise forbidden("只有管理员和操作员可以发布应急广播。", "Only admins and operators may send an emergency.")
    if confirm_words not in (CONFIRM_WORDS, CONFIRM_WORDS_EN):
        raise BroadcastError(
            "alert.confirmation_required",
            f"请输入“{CONFIRM_WORDS}”以确认发布应急广播。",
            f"Type “{CONFIRM_WORDS_EN}” (or “{CONFIRM_WORDS}”) to confirm the emergency broadcast.",
        )
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MANUAL_CHARS:
        raise BroadcastError(
            "alert.text_required",
            f"请输入 1-{MAX_MANUAL_CHARS} 字的应急广播内容。",
            f"Give the emergency text (1-{MAX_MANUAL_CHARS} characters).",
        )
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise BroadcastError("targets_required", "请至少选择一个播发区域或终端。", "Choose at least one target.")
    regions.resolve_targets(session, list(targets), user)  # unknown or out-of-region targets: refused first
    now = time.time()
    row = _local_alert(f"manual:{user.username}", f"manual-{int(now * 1000)}", now, "人工应急广播", "red", text)
    row.region_codes = list(targets)
    row.decision, row.reason = "broadcast", f"manual:{user.username}"
    session.add(row)
    session.flush()
    note(session, row, "received", "manual", user.username)
    launch(session, platform, row, user, user.username, now)
    session.commit()
    return Outcome(row.id, row.decision, row.reason, row.broadcast_id)


def _local_alert(sender: str, identifier: str, at: float, event: str, level: str, text: str) -> Alert:
    sent = datetime.fromtimestamp(at, UTC)
    return Alert(
        identifier=identifier,
        sender=sender[:255],
        sent=sent,
        sent_key=sent.isoformat(),
        status="Actual",
        msg_type="Alert",
        references=[],
        event=event[:200],
        level=level,
        decision="broadcast",
        reason="",
        state="logged",
        audience="public",
        region_codes=[],
        speaker_ids=[],
        text=text,
        source=sender[:64],
        raw=text,
    )


def trigger_rule(platform: Platform, source: str) -> TriggerRule:
    """The configured rule of a sensor source, or not found."""
    rule = parse_rules(str(platform.settings.get("ALERT_TRIGGERS", ""))).get(source)
    if rule is None:
        raise not_found("传感器来源", "Trigger source", source)
    return rule


def trigger(
    session: Session,
    platform: Platform,
    source: str,
    body: bytes,
    signature: str | None,
    *,
    address: str | None = None,
    now: float | None = None,
) -> Outcome | dict[str, object]:
    """A signed sensor reading: play once when it crosses the threshold; re-arm once it falls back past hysteresis."""
    now = time.time() if now is None else now
    rule = trigger_rule(platform, source)
    if not signature_ok(rule.secret, body, signature):
        audit.record(session, f"trigger:{source}"[:64], "alert.trigger_refused", address=address, reason="signature")
        session.commit()
        raise AlertError(
            "bad_signature", "传感器数据签名无效。", "The reading's signature is invalid.", kind="unauthorized"
        )
    reading = parse_reading(body)
    if abs(reading.at - now) > rule.max_skew_s:
        raise AlertError(
            "stale_reading",
            f"传感器数据时间与服务器相差超过 {rule.max_skew_s:g} 秒。",
            f"The reading's time is more than {rule.max_skew_s:g} s from the server's.",
        )
    state = session.get(TriggerState, source, with_for_update=True)
    if state is None:
        state = TriggerState(source=source, active=False)
        session.add(state)
    if state.last_at is not None and reading.at <= state.last_at:
        session.rollback()
        return {"action": "ignored", "reason": "not_newer", "source": source}
    fire, active = rule.step(state.active, reading.value)
    rearmed = state.active and not active
    state.active, state.last_value, state.last_at = active, reading.value, reading.at
    if rearmed:
        audit.record(session, f"trigger:{source}"[:64], "alert.trigger_rearmed", value=reading.value, address=address)
    if not fire:
        session.commit()
        return {"action": "ignored", "reason": "active" if active else "below_threshold", "source": source}
    return _fire(session, platform, rule, reading.value, reading.at, body, now)


def _fire(
    session: Session, platform: Platform, rule: TriggerRule, value: float, at: float, body: bytes, now: float
) -> Outcome:
    row = _local_alert(f"trigger:{rule.source}", f"{rule.source}-{int(at * 1000)}", at, rule.event, rule.level, "")
    row.text, row.region_codes = rule.message(value), list(rule.targets)
    row.raw = body.decode("utf-8", errors="replace")
    handling = policy_table(platform).levels.get(rule.level, "hold")
    row.decision = {"auto": "broadcast", "hold": "held", "log": "ignored"}[handling]
    row.reason = f"trigger:{rule.source}>={rule.threshold:g}" if rule.direction == "above" else f"trigger:{rule.source}"
    session.add(row)
    session.flush()
    state = session.get(TriggerState, rule.source)
    if state is not None:
        state.alert_id = row.id
    actor = f"trigger:{rule.source}"
    note(session, row, "received", f"value={value:g}", actor)
    if row.decision == "broadcast":
        launch(session, platform, row, system_user(session), actor, now, clip_id=rule.clip_id)
    else:
        row.state = "held" if row.decision == "held" else "logged"
        note(session, row, row.decision, row.reason, actor)
    session.commit()
    return Outcome(row.id, row.decision, row.reason, row.broadcast_id)
