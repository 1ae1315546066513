"""Policy: status, msgType, duplicates, expiry, language choice and the settable handling table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broadcast.alerts import AlertError, PolicyTable, choose_info, decide, parse
from broadcast.alerts.levels import level_of, stated_level
from tests.alerts.corpus import InfoSpec, cap, english_info

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TABLE = PolicyTable()


def _decide(data: bytes, *, duplicate: bool = False, table: PolicyTable = TABLE, now: datetime = NOW):
    return decide(parse(data), now=now, duplicate=duplicate, table=table)


def test_an_actual_orange_alert_broadcasts_to_the_public() -> None:
    decision = _decide(cap())
    assert (decision.action, decision.audience, decision.level) == ("broadcast", "public", "orange")
    assert decision.reason == "policy_auto:level_orange"


@pytest.mark.parametrize(("status", "audience"), [("Exercise", "test"), ("Test", "test"), ("Actual", "public")])
def test_exercise_and_test_go_to_test_speakers_only(status: str, audience: str) -> None:
    assert _decide(cap(status=status)).audience == audience


@pytest.mark.parametrize("status", ["System", "Draft"])
def test_system_and_draft_are_logged_only(status: str) -> None:
    decision = _decide(cap(status=status))
    assert (decision.action, decision.reason) == ("ignored", f"status_{status.lower()}")


def test_duplicates_are_reported_first() -> None:
    assert _decide(cap(), duplicate=False).action == "broadcast"
    assert _decide(cap(), duplicate=True).action == "duplicate"


def test_expired_alerts_are_not_played() -> None:
    assert _decide(cap(infos=[InfoSpec(expires=NOW + timedelta(minutes=5))])).action == "broadcast"
    decision = _decide(cap(infos=[InfoSpec(expires=NOW - timedelta(minutes=5))]))
    assert (decision.action, decision.reason) == ("ignored", "expired")


def test_update_and_cancel() -> None:
    ref = "12379@hb.gov.cn,OLD-1,2026-06-01T07:00:00+08:00"
    assert _decide(cap(msg_type="Update", references=ref)).action == "updated"
    assert _decide(cap(msg_type="Cancel", references=ref)).action == "cancelled"
    assert _decide(cap(msg_type="Cancel")).reason == "cancel_without_references"
    assert _decide(cap(msg_type="Ack", references=ref)).action == "ignored"


@pytest.mark.parametrize(
    ("headline", "severity", "action", "level"),
    [
        ("发布暴雨红色预警信号", "Unknown", "broadcast", "red"),
        ("发布暴雨橙色预警信号", "Unknown", "broadcast", "orange"),
        ("发布暴雨黄色预警信号", "Extreme", "held", "yellow"),
        ("发布暴雨蓝色预警信号", "Extreme", "held", "blue"),
        ("发布防汛Ⅰ级应急响应", "Minor", "broadcast", "red"),
        ("发布防汛Ⅳ级应急响应", "Extreme", "held", "blue"),
        ("暴雨黄色预警升级为红色", "Minor", "broadcast", "red"),
        ("暴雨预警", "Extreme", "broadcast", "red"),  # no stated level: the severity rules decide
        ("暴雨预警", "Moderate", "held", "yellow"),
    ],
)
def test_levels_and_severity_table(headline: str, severity: str, action: str, level: str) -> None:
    decision = _decide(cap(infos=[InfoSpec(headline=headline, event="暴雨", severity=severity)]))
    assert (decision.action, decision.level) == (action, level)


def test_past_and_unlikely_are_logged_by_the_default_rules() -> None:
    plain = {"headline": "暴雨预警", "severity": "Extreme"}
    assert _decide(cap(infos=[InfoSpec(urgency="Past", **plain)])).reason == "policy_log:rule_1"
    assert _decide(cap(infos=[InfoSpec(certainty="Unlikely", **plain)])).reason == "policy_log:rule_2"


def test_the_table_is_settable() -> None:
    table = PolicyTable.from_json(
        '{"levels": {"yellow": "auto", "red": "hold"}, "rules": [{"severity": "Minor", "action": "log"}], '
        '"default": "auto"}'
    )
    assert _decide(cap(infos=[InfoSpec(headline="黄色预警")]), table=table).action == "broadcast"
    assert _decide(cap(infos=[InfoSpec(headline="红色预警")]), table=table).action == "held"
    assert _decide(cap(infos=[InfoSpec(headline="预警", severity="Minor")]), table=table).action == "ignored"
    assert _decide(cap(infos=[InfoSpec(headline="预警", severity="Moderate")]), table=table).action == "broadcast"
    assert PolicyTable.from_json("") == PolicyTable()


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"levels": {"purple": "auto"}}', '{"default": "maybe"}', '{"rules": [{"severity": "Big"}]}'],
)
def test_a_bad_table_is_refused(text: str) -> None:
    with pytest.raises(AlertError) as caught:
        PolicyTable.from_json(text)
    assert caught.value.code == "alert.invalid_policy"


def test_chinese_info_is_chosen_among_languages() -> None:
    alert = parse(cap(infos=[english_info(), InfoSpec(language="zh-TW"), InfoSpec(language="zh-CN", event="台风")]))
    assert choose_info(alert).event == "台风"
    alert = parse(cap(infos=[english_info(), InfoSpec(language="zh-TW", event="颱風")]))
    assert choose_info(alert).event == "颱風"
    alert = parse(cap(infos=[english_info(language="fr-FR"), english_info()]))
    assert choose_info(alert).language == "fr-FR"


def test_stated_levels() -> None:
    assert stated_level("Ⅱ级") == "orange"
    assert stated_level("II级") == "orange"
    assert stated_level("III级") == "yellow"
    assert stated_level("最大震度4级") is None
    assert stated_level("nothing") is None
    info = parse(cap(infos=[InfoSpec(headline="无等级", severity="Minor")])).infos[0]
    assert level_of(info) == ("blue", False)
