"""Pin: the alert policy at its edges (handling table, settable table, message decisions, language choice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from broadcast.alerts import AlertError, CapAlert, Decision, Info, PolicyTable, choose_info, decide
from broadcast.alerts.model import Reference
from broadcast.alerts.policy import Rule

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
REF = Reference("12379@hb.gov.cn", "OLD-1", NOW - timedelta(hours=1))


def _info(
    *,
    severity: str = "Unknown",
    urgency: str = "Immediate",
    certainty: str = "Observed",
    event: str = "暴雨",
    headline: str = "",
    language: str = "zh-CN",
    expires: datetime | None = None,
    parameters: tuple[tuple[str, str], ...] = (),
) -> Info:
    return Info(
        language=language,
        categories=("Met",),
        event=event,
        urgency=urgency,
        severity=severity,
        certainty=certainty,
        headline=headline,
        expires=expires,
        parameters=parameters,
    )


def _alert(
    *infos: Info, status: str = "Actual", msg_type: str = "Alert", references: tuple[Reference, ...] = ()
) -> CapAlert:
    return CapAlert(
        version="1.2",
        identifier="ID-1",
        sender="12379@hb.gov.cn",
        sent=NOW,
        status=status,
        msg_type=msg_type,
        scope="Public",
        references=references,
        infos=infos,
    )


def _decide(alert: CapAlert, *, duplicate: bool = False, table: PolicyTable | None = None) -> Decision:
    return decide(alert, now=NOW, duplicate=duplicate, table=table or PolicyTable())


def _refusal(text: str) -> AlertError:
    with pytest.raises(AlertError) as caught:
        PolicyTable.from_json(text)
    assert (caught.value.code, caught.value.kind) == ("alert.invalid_policy", "invalid")
    assert caught.value.zh.startswith("预警处置表设置无效：")
    assert caught.value.en.startswith("Invalid alert policy table: ")
    return caught.value


# --- the handling table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level_word", "handling"), [("红色", "auto"), ("橙色", "auto"), ("黄色", "hold"), ("蓝色", "hold")]
)
def test_a_stated_level_decides_by_the_level_table(level_word: str, handling: str) -> None:
    """Red and orange play on their own, yellow and blue wait for a person, whatever the severity says."""
    for severity in ("Extreme", "Minor"):
        info = _info(headline=f"暴雨{level_word}预警", severity=severity)
        level = {"红色": "red", "橙色": "orange", "黄色": "yellow", "蓝色": "blue"}[level_word]
        assert PolicyTable().handling(info) == (handling, f"level_{level}")


def test_a_level_missing_from_the_table_falls_through_to_the_rules() -> None:
    """A table without a row for the stated level lets the severity rules decide."""
    table = PolicyTable(levels={"red": "log"})
    assert table.handling(_info(headline="红色预警")) == ("log", "level_red")
    assert table.handling(_info(headline="黄色预警", severity="Extreme")) == ("auto", "rule_3")
    assert table.handling(_info(headline="黄色预警", severity="Moderate")) == ("hold", "default")


def test_a_level_read_from_the_severity_does_not_use_the_level_table() -> None:
    """Severity Severe reads as orange, yet only a stated level takes the level row: Past still logs."""
    assert PolicyTable().handling(_info(severity="Severe", urgency="Past")) == ("log", "rule_1")


@pytest.mark.parametrize(
    ("severity", "urgency", "certainty", "expected"),
    [
        ("Extreme", "Past", "Observed", ("log", "rule_1")),
        ("Extreme", "Immediate", "Unlikely", ("log", "rule_2")),
        ("Extreme", "Immediate", "Observed", ("auto", "rule_3")),
        ("Severe", "Expected", "Likely", ("auto", "rule_3")),
        ("Moderate", "Immediate", "Observed", ("hold", "default")),
        ("Extreme", "Future", "Observed", ("hold", "default")),
        ("Extreme", "Immediate", "Possible", ("hold", "default")),
        ("Unknown", "Unknown", "Unknown", ("hold", "default")),
    ],
)
def test_the_default_rules_in_order(severity: str, urgency: str, certainty: str, expected: tuple[str, str]) -> None:
    """Past logs, Unlikely logs, Extreme/Severe + Immediate/Expected + Observed/Likely plays, anything else holds."""
    info = _info(severity=severity, urgency=urgency, certainty=certainty)
    assert PolicyTable().handling(info) == expected


def test_a_rule_needs_all_three_sets_to_match() -> None:
    """Each of severity, urgency and certainty is checked; None means any value."""
    rule = Rule(frozenset({"Extreme"}), frozenset({"Immediate"}), frozenset({"Observed"}), "auto")
    assert rule.matches(_info(severity="Extreme"))
    assert not rule.matches(_info(severity="Severe"))
    assert not rule.matches(_info(severity="Extreme", urgency="Expected"))
    assert not rule.matches(_info(severity="Extreme", certainty="Likely"))
    assert Rule(None, None, None, "log").matches(_info())


def test_the_first_matching_rule_wins_and_rules_count_from_one() -> None:
    """Rows are tried in order; the reason names the row that chose."""
    table = PolicyTable(
        rules=(
            Rule(frozenset({"Minor"}), None, None, "log"),
            Rule(None, None, None, "auto"),
            Rule(None, None, None, "hold"),
        )
    )
    assert table.handling(_info(severity="Minor")) == ("log", "rule_1")
    assert table.handling(_info(severity="Moderate")) == ("auto", "rule_2")
    assert PolicyTable(rules=(), default="log").handling(_info()) == ("log", "default")


# --- the settable table -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_an_empty_setting_gives_the_default_table(text: str) -> None:
    """ALERT_POLICY empty or blank means the built-in table."""
    assert PolicyTable.from_json(text) == PolicyTable()


def test_the_default_table_is_the_documented_one() -> None:
    """Red/orange auto, yellow/blue hold, the three rules, default hold."""
    table = PolicyTable()
    assert table.levels == {"red": "auto", "orange": "auto", "yellow": "hold", "blue": "hold"}
    assert table.default == "hold"
    assert [r.handling for r in table.rules] == ["log", "log", "auto"]


def test_levels_given_override_only_their_own_rows() -> None:
    """A partial levels object keeps the defaults of the other levels, and the rules and default stay."""
    table = PolicyTable.from_json('{"levels": {"blue": "log"}}')
    assert table.levels == {"red": "auto", "orange": "auto", "yellow": "hold", "blue": "log"}
    assert (table.rules, table.default) == (PolicyTable().rules, "hold")


def test_rules_given_replace_all_the_default_rules() -> None:
    """A rules list is the whole list: the default rows are gone; an omitted dimension is any, '*' too."""
    table = PolicyTable.from_json(
        '{"rules": [{"severity": ["Extreme", "Severe"], "urgency": "*", "action": "auto"}], "default": "log"}'
    )
    assert table.rules == (Rule(frozenset({"Extreme", "Severe"}), None, None, "auto"),)
    assert table.default == "log"
    assert table.handling(_info(severity="Severe", urgency="Past")) == ("auto", "rule_1")
    assert table.handling(_info(severity="Minor", certainty="Unlikely")) == ("log", "default")
    one = PolicyTable.from_json('{"rules": [{"urgency": "Past", "certainty": ["Likely"], "action": "hold"}]}')
    assert one.rules == (Rule(None, frozenset({"Past"}), frozenset({"Likely"}), "hold"),)
    assert PolicyTable.from_json('{"rules": []}').rules == ()


@pytest.mark.parametrize(
    ("text", "en"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('"auto"', "must be a JSON object"),
        ('{"levels": ["red"]}', "levels keys must be among red, orange, yellow, blue"),
        ('{"levels": {"purple": "auto"}}', "levels keys must be among red, orange, yellow, blue"),
        ('{"levels": {"red": "loud"}}', "levels.red: loud is not auto/hold/log"),
        ('{"default": "maybe"}', "default: maybe is not auto/hold/log"),
        ('{"default": null}', "default: None is not auto/hold/log"),
        ('{"rules": {"action": "log"}}', "rules must be a list"),
        ('{"rules": ["log"]}', "each rule must be an object"),
        ('{"rules": [{"severity": "Minor"}]}', "rule.action: None is not auto/hold/log"),
        ('{"rules": [{"severity": "Minor", "action": "drop"}]}', "rule.action: drop is not auto/hold/log"),
        ('{"rules": [{"severity": "Big", "action": "log"}]}', "rule severity must be '*' or among"),
        ('{"rules": [{"severity": [], "action": "log"}]}', "rule severity must be '*' or among"),
        ('{"rules": [{"urgency": 3, "action": "log"}]}', "rule urgency must be '*' or among"),
        ('{"rules": [{"certainty": ["Likely", "Sure"], "action": "log"}]}', "rule certainty must be '*' or among"),
    ],
)
def test_a_bad_table_is_refused_with_its_reason(text: str, en: str) -> None:
    """Every malformed part of ALERT_POLICY is refused as invalid and says which part is wrong."""
    assert en in _refusal(text).en


def test_a_refusal_names_the_bad_value_in_both_languages() -> None:
    """The message quotes the offending value, cut to 20 characters, and the allowed handlings."""
    error = _refusal('{"default": "' + "x" * 30 + '"}')
    assert error.en == f"Invalid alert policy table: default: {'x' * 20} is not auto/hold/log."
    assert error.zh == f"预警处置表设置无效：default 的处置 {'x' * 20} 无效（auto、hold、log）。"
    assert _refusal("[]").zh == "预警处置表设置无效：必须是 JSON 对象。"
    assert _refusal('{"rules": 1}').zh == "预警处置表设置无效：rules 必须是列表。"
    assert _refusal('{"rules": [1]}').zh == "预警处置表设置无效：每条规则必须是对象。"
    assert (
        _refusal('{"levels": {"x": "auto"}}').zh == "预警处置表设置无效：levels 的键只能是 red、orange、yellow、blue。"
    )
    assert _refusal('{"rules": [{"urgency": "Now", "action": "log"}]}').zh == (
        "预警处置表设置无效：规则的 urgency 须取自 Immediate、Expected、Future、Past、Unknown 或 *。"
    )
    assert _refusal('{"rules": [{"urgency": "Now", "action": "log"}]}').en == (
        "Invalid alert policy table: rule urgency must be '*' or among "
        "('Immediate', 'Expected', 'Future', 'Past', 'Unknown')."
    )
    assert _refusal("{").zh.startswith("预警处置表设置无效：不是有效的 JSON（")


# --- decisions ----------------------------------------------------------------------------------------------------


def test_a_duplicate_is_reported_before_anything_else() -> None:
    """Even a System message or an expired one is first a duplicate, with the audience of its status."""
    assert _decide(_alert(_info(), status="System"), duplicate=True) == Decision("duplicate", "duplicate")
    assert _decide(_alert(_info(), status="Exercise"), duplicate=True) == Decision(
        "duplicate", "duplicate", audience="test"
    )


@pytest.mark.parametrize(("status", "audience"), [("Actual", "public"), ("Exercise", "test"), ("Test", "test")])
def test_the_audience_follows_the_status(status: str, audience: str) -> None:
    """Exercise and Test messages only reach speakers flagged for tests."""
    info = _info(headline="红色预警")
    assert _decide(_alert(info, status=status)) == Decision("broadcast", "policy_auto:level_red", info, "red", audience)


@pytest.mark.parametrize(("status", "reason"), [("System", "status_system"), ("Draft", "status_draft")])
def test_system_and_draft_are_ignored_without_info(status: str, reason: str) -> None:
    """A System or Draft message is logged, nothing chosen to speak."""
    assert _decide(_alert(_info(headline="红色预警"), status=status)) == Decision("ignored", reason)


@pytest.mark.parametrize(("msg_type", "reason"), [("Ack", "msg_type_ack"), ("Error", "msg_type_error")])
def test_ack_and_error_are_ignored(msg_type: str, reason: str) -> None:
    """Acknowledgements and error notices are never played, even with references and a red level."""
    alert = _alert(_info(headline="红色预警"), msg_type=msg_type, references=(REF,))
    assert _decide(alert) == Decision("ignored", reason)
    assert _decide(_alert(_info(), status="Test", msg_type=msg_type)).audience == "test"


def test_a_cancel_with_references_cancels_even_when_expired_or_without_info() -> None:
    """A cancel is honoured before expiry and the handling table are looked at."""
    info = _info(headline="黄色预警", expires=NOW - timedelta(hours=1))
    cancel = _alert(info, msg_type="Cancel", references=(REF,))
    assert _decide(cancel) == Decision("cancelled", "cancel", info, "yellow")
    assert _decide(_alert(msg_type="Cancel", references=(REF,))) == Decision("cancelled", "cancel")


def test_a_cancel_without_references_is_ignored() -> None:
    """A cancel that names no earlier message cannot cancel anything."""
    info = _info(severity="Minor")
    assert _decide(_alert(info, msg_type="Cancel", status="Test")) == Decision(
        "ignored", "cancel_without_references", info, "blue", "test"
    )


def test_a_message_without_info_is_ignored() -> None:
    """Nothing to say: no_info."""
    assert _decide(_alert()) == Decision("ignored", "no_info")
    assert _decide(_alert(status="Exercise")) == Decision("ignored", "no_info", audience="test")


def test_expiry_is_exclusive_of_its_instant() -> None:
    """An info that expires exactly now is already expired; one second later it still plays."""
    at_now = _info(headline="红色预警", expires=NOW)
    assert _decide(_alert(at_now)) == Decision("ignored", "expired", at_now, "red")
    later = _info(headline="红色预警", expires=NOW + timedelta(seconds=1))
    assert _decide(_alert(later)).action == "broadcast"


@pytest.mark.parametrize(
    ("handling", "action", "reason"),
    [("log", "ignored", "policy_log:level_red"), ("hold", "held", "policy_hold:level_red")],
)
def test_log_and_hold_handlings(handling: str, action: str, reason: str) -> None:
    """A log handling ignores the alert, a hold handling waits for an operator, both keep the info and level."""
    info = _info(headline="红色预警")
    table = PolicyTable(levels={"red": handling})
    assert _decide(_alert(info), table=table) == Decision(action, reason, info, "red")
    assert _decide(_alert(info, msg_type="Update", references=(REF,)), table=table).action == action


def test_an_update_with_references_updates_and_without_them_broadcasts() -> None:
    """An Update replaces what it references; one that references nothing is a new alert."""
    info = _info(severity="Extreme")
    update = _alert(info, msg_type="Update", references=(REF,))
    assert _decide(update) == Decision("updated", "policy_auto:rule_3", info, "red")
    assert _decide(_alert(info, msg_type="Update")) == Decision("broadcast", "policy_auto:rule_3", info, "red")


# --- which info is spoken -----------------------------------------------------------------------------------------


def _languages(*languages: str) -> str | None:
    chosen = choose_info(_alert(*(_info(language=lang) for lang in languages)))
    return chosen.language if chosen else None


def test_simplified_chinese_is_preferred_in_order() -> None:
    """zh-CN before zh-Hans before any other Chinese before the first info; case does not matter."""
    assert _languages("en-US", "zh-TW", "zh-Hans", "zh-CN") == "zh-CN"
    assert _languages("zh-TW", "zh-hans", "en-US") == "zh-hans"
    assert _languages("en-US", "ZH-CN", "zh-TW") == "ZH-CN"
    assert _languages("en-US", "zh-TW", "ZH-HK") == "zh-TW"
    assert _languages("en-US", "ZH") == "ZH"
    assert _languages("en-US", "fr-FR") == "en-US"
    assert _languages() is None


@pytest.mark.parametrize(
    ("text", "en"),
    [
        ("[]", "must be a JSON object"),
        ('{"rules": {}}', "rules must be a list"),
        ('{"rules": [[]]}', "each rule must be an object"),
    ],
)
def test_a_shape_refusal_reads_in_english(text: str, en: str) -> None:
    """The English message of a wrongly shaped table is the whole reason, nothing else."""
    assert _refusal(text).en == f"Invalid alert policy table: {en}."


@pytest.mark.parametrize("status", ["Exercise", "Test"])
def test_a_drill_keeps_its_test_audience_in_every_outcome(status: str) -> None:
    """Whatever the decision (cancel, expired, log, hold, update), a drill never reaches the public."""
    red = _info(headline="红色预警")
    gone = _info(headline="红色预警", expires=NOW)
    cases = [
        (_alert(red, status=status, msg_type="Cancel", references=(REF,)), PolicyTable(), "cancelled"),
        (_alert(gone, status=status), PolicyTable(), "ignored"),
        (_alert(red, status=status), PolicyTable(levels={"red": "log"}), "ignored"),
        (_alert(red, status=status), PolicyTable(levels={"red": "hold"}), "held"),
        (_alert(red, status=status, msg_type="Update", references=(REF,)), PolicyTable(), "updated"),
        (_alert(red, status=status), PolicyTable(), "broadcast"),
    ]
    for alert, table, action in cases:
        decision = _decide(alert, table=table)
        assert (decision.action, decision.audience) == (action, "test")
