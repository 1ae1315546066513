"""Pin: sensor trigger rules at their edges (settings, hysteresis bands, readings, refusals and their messages)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broadcast.alerts import AlertError
from broadcast.alerts.triggers import (
    DEFAULT_SKEW_S,
    MAX_READING_BYTES,
    Reading,
    TriggerRule,
    parse_reading,
    parse_rules,
)

SECRET = "s" * 16
MINIMAL = {"secret": SECRET, "threshold": 85, "targets": ["421224104000"]}


def _rules(**rows: dict[str, Any]) -> dict[str, TriggerRule]:
    return parse_rules(json.dumps(rows, ensure_ascii=False))


def _rule(**change: Any) -> TriggerRule:
    return _rules(gauge={**MINIMAL, **change})["gauge"]


def _refused(text: str) -> tuple[str, str, str]:
    with pytest.raises(AlertError) as caught:
        parse_rules(text)
    error = caught.value
    assert error.kind == "bad_request"
    return error.code, error.zh, error.en


def _bad(zh: str, en: str) -> tuple[str, str, str]:
    return "alert.invalid_triggers", f"传感器触发规则设置无效：{zh}。", f"Invalid sensor trigger rules: {en}."


# --- rules from the setting ---------------------------------------------------------------------------------------


def test_a_minimal_rule_takes_the_documented_defaults() -> None:
    """Only secret, threshold and targets given: named after its source, red, above, no band, 300 s skew."""
    assert _rule() == TriggerRule(
        source="gauge",
        name="gauge",
        secret=SECRET,
        threshold=85.0,
        hysteresis=0.0,
        targets=("421224104000",),
        direction="above",
        event="传感器报警",
        level="red",
        text="{name}监测值{value}{unit}，已达到{threshold}{unit}的警戒值，请注意安全，按照指引转移。",
        unit="",
        clip_id=None,
        max_skew_s=DEFAULT_SKEW_S,
    )
    assert DEFAULT_SKEW_S == 300.0


def test_every_setting_of_a_rule_is_read() -> None:
    """Each key of a rule lands in its field."""
    rule = _rule(
        name="黄沙水库",
        threshold=2.5,
        hysteresis=0.5,
        targets=["421224104000", "spk-1"],
        direction="below",
        event="水库水位",
        level="yellow",
        text="{name}：{value}{unit}",
        unit="米",
        clip_id=7,
        max_skew_s=60,
    )
    assert rule == TriggerRule(
        source="gauge",
        name="黄沙水库",
        secret=SECRET,
        threshold=2.5,
        hysteresis=0.5,
        targets=("421224104000", "spk-1"),
        direction="below",
        event="水库水位",
        level="yellow",
        text="{name}：{value}{unit}",
        unit="米",
        clip_id=7,
        max_skew_s=60.0,
    )


def test_long_texts_are_cut_to_their_limits() -> None:
    """name and event keep 60 characters, text 300, unit 12."""
    rule = _rule(name="n" * 70, event="e" * 70, text="t" * 310, unit="u" * 20)
    assert (rule.name, rule.event, rule.text, rule.unit) == ("n" * 60, "e" * 60, "t" * 300, "u" * 12)


def test_several_sources_are_read_by_name() -> None:
    """The setting is keyed by source name; letters, digits, _ . - up to 64 characters."""
    source = "A-z_0." + "x" * 58
    rules = _rules(**{"reservoir-1": MINIMAL, source: {**MINIMAL, "threshold": 3}})
    assert sorted(rules) == sorted(["reservoir-1", source])
    assert rules[source].threshold == 3.0


@pytest.mark.parametrize("text", ["", "  \n"])
def test_an_empty_setting_has_no_rules(text: str) -> None:
    """ALERT_TRIGGERS unset or blank: no sensor may trigger."""
    assert parse_rules(text) == {}


def test_a_secret_needs_sixteen_characters() -> None:
    """Exactly 16 characters are enough; 15 are refused."""
    assert _rule(secret="k" * 16).secret == "k" * 16
    assert _refused(json.dumps({"gauge": {**MINIMAL, "secret": "k" * 15}})) == _bad(
        "gauge 需要至少 16 个字符的 secret", "gauge: a secret of 16+ characters is required"
    )


def test_a_zero_or_fractional_hysteresis_is_allowed() -> None:
    """No band at all (0) or half a unit are both valid."""
    assert _rule(hysteresis=0).hysteresis == 0.0
    assert _rule(hysteresis=0.5).hysteresis == 0.5


@pytest.mark.parametrize(
    ("text", "zh", "en"),
    [
        ("{", "不是有效的 JSON（Expecting property name enclosed in double quotes", "not valid JSON ("),
        ("[]", "必须是以来源名为键的 JSON 对象", "must be a JSON object keyed by source name"),
        ('{"bad name": {}}', "来源名 bad name 无效", "bad source name or rule: bad name"),
        ('{"gauge": []}', "来源名 gauge 无效", "bad source name or rule: gauge"),
    ],
)
def test_a_malformed_setting_is_refused(text: str, zh: str, en: str) -> None:
    """Broken JSON, a non-object, a bad source name or a rule that is not an object."""
    code, zh_said, en_said = _refused(text)
    assert code == "alert.invalid_triggers"
    assert zh_said.startswith(f"传感器触发规则设置无效：{zh}")
    assert en_said.startswith(f"Invalid sensor trigger rules: {en}")


@pytest.mark.parametrize(
    "text", ["{", '{"gauge": {"secret": "ssssssssssssssss", "threshold": 1, "targets": ["x"], "text": "{x}"}}']
)
def test_a_json_or_text_error_is_reported_without_the_parser_trace(text: str) -> None:
    """The refusal replaces the JSON or format error, it does not chain it."""
    with pytest.raises(AlertError) as caught:
        parse_rules(text)
    assert caught.value.__suppress_context__
    assert caught.value.__cause__ is None


def test_a_long_bad_source_name_is_quoted_cut_to_40_characters() -> None:
    """The message quotes at most 40 characters of a bad source name."""
    name = "x" * 65
    assert _refused(json.dumps({name: MINIMAL})) == _bad(
        f"来源名 {'x' * 40} 无效", f"bad source name or rule: {'x' * 40}"
    )


@pytest.mark.parametrize(
    ("change", "zh", "en"),
    [
        (
            {"targets": "421224104000"},
            "gauge 需要 targets（区域代码或终端编号列表）",
            "gauge: targets must be a list of ids",
        ),
        ({"targets": [1]}, "gauge 需要 targets（区域代码或终端编号列表）", "gauge: targets must be a list of ids"),
        ({"direction": "up"}, "gauge 的 direction 只能是 above 或 below", "gauge: direction is above or below"),
        (
            {"level": "purple"},
            "gauge 的 level 只能是 red、orange、yellow、blue",
            "gauge: level is one of ('red', 'orange', 'yellow', 'blue')",
        ),
        ({"secret": None}, "gauge 需要至少 16 个字符的 secret", "gauge: a secret of 16+ characters is required"),
        ({"clip_id": True}, "gauge 的 clip_id 必须是整数", "gauge: clip_id must be an integer"),
        ({"clip_id": 1.5}, "gauge 的 clip_id 必须是整数", "gauge: clip_id must be an integer"),
        ({"hysteresis": -0.1}, "gauge 的 hysteresis 不能为负", "gauge: hysteresis may not be negative"),
        ({"hysteresis": "1"}, "gauge 的 hysteresis 必须是数字", "gauge: hysteresis must be a number"),
        ({"threshold": True}, "gauge 的 threshold 必须是数字", "gauge: threshold must be a number"),
        ({"threshold": None}, "gauge 的 threshold 必须是数字", "gauge: threshold must be a number"),
        ({"max_skew_s": "60"}, "gauge 的 max_skew_s 必须是数字", "gauge: max_skew_s must be a number"),
        (
            {"text": "{name} {level}"},
            "gauge 的 text 只能使用 {name}、{value}、{threshold}、{unit}",
            "bad text",
        ),
        ({"text": "{0}"}, "gauge 的 text 只能使用 {name}、{value}、{threshold}、{unit}", "bad text"),
        ({"text": "{value:x}"}, "gauge 的 text 只能使用 {name}、{value}、{threshold}、{unit}", "bad text"),
    ],
)
def test_each_bad_rule_is_refused_with_its_reason(change: dict[str, Any], zh: str, en: str) -> None:
    """A bad key of a rule is refused naming the source and the key, in both languages."""
    assert _refused(json.dumps({"gauge": {**MINIMAL, **change}})) == _bad(zh, en)


def test_a_missing_threshold_or_targets_is_refused() -> None:
    """threshold and targets have no default."""
    no_threshold = {k: v for k, v in MINIMAL.items() if k != "threshold"}
    assert _refused(json.dumps({"gauge": no_threshold})) == _bad(
        "gauge 的 threshold 必须是数字", "gauge: threshold must be a number"
    )
    no_targets = {k: v for k, v in MINIMAL.items() if k != "targets"}
    assert _refused(json.dumps({"gauge": no_targets}))[2] == (
        "Invalid sensor trigger rules: gauge: targets must be a list of ids."
    )


def test_an_infinite_threshold_is_refused() -> None:
    """A threshold must be finite (JSON's Infinity is read by Python, and refused)."""
    assert _refused('{"gauge": {"secret": "ssssssssssssssss", "threshold": Infinity, "targets": ["x"]}}') == _bad(
        "gauge 的 threshold 必须是数字", "gauge: threshold must be a number"
    )


# --- the spoken text ----------------------------------------------------------------------------------------------


def test_the_message_names_the_sensor_value_threshold_and_unit() -> None:
    """The default text reads the reading without trailing zeros."""
    rule = _rule(name="黄沙水库", unit="米", threshold=85.0)
    assert rule.message(85.5) == "黄沙水库监测值85.5米，已达到85米的警戒值，请注意安全，按照指引转移。"
    assert _rule(text="{unit}|{value}|{threshold}|{name}", unit="m", threshold=2.25).message(3) == "m|3|2.25|gauge"


# --- hysteresis ---------------------------------------------------------------------------------------------------


def test_above_fires_at_the_threshold_and_re_arms_only_below_the_band() -> None:
    """Rising: fire at value ≥ threshold; stay active down to threshold − band inclusive; re-arm below it."""
    rule = _rule(threshold=85, hysteresis=1)
    assert rule.step(False, 84.99) == (False, False)
    assert rule.step(False, 85) == (True, True)
    assert rule.step(True, 90) == (False, True)
    assert rule.step(True, 84) == (False, True)
    assert rule.step(True, 83.99) == (False, False)


def test_below_fires_at_the_threshold_and_re_arms_only_above_the_band() -> None:
    """Falling: fire at value ≤ threshold; stay active up to threshold + band inclusive; re-arm above it."""
    rule = _rule(threshold=10, hysteresis=2, direction="below")
    assert rule.step(False, 10.01) == (False, False)
    assert rule.step(False, 10) == (True, True)
    assert rule.step(True, 12) == (False, True)
    assert rule.step(True, 12.01) == (False, False)


def test_without_a_band_the_alarm_re_arms_just_past_the_threshold() -> None:
    """Hysteresis 0: active at the threshold itself, cleared by any value beyond it."""
    rule = _rule(threshold=5)
    assert rule.step(True, 5) == (False, True)
    assert rule.step(True, 4.999) == (False, False)


# --- readings -----------------------------------------------------------------------------------------------------


def test_a_reading_with_unix_seconds_or_an_iso_time() -> None:
    """`at` is unix seconds (int or float) or ISO 8601 with an offset; the value becomes a float."""
    assert parse_reading(b'{"value": 3, "at": 1700000000}') == Reading(3.0, 1700000000.0)
    assert parse_reading(b'{"value": 2.5, "at": 1.5}') == Reading(2.5, 1.5)
    assert parse_reading(b'{"value": -1, "at": "1970-01-01T08:00:10+08:00"}') == Reading(-1.0, 10.0)


def test_a_reading_may_be_exactly_the_size_limit() -> None:
    """MAX_READING_BYTES bytes are read; one more is refused as too large."""
    body = b'{"value": 1, "at": 2}'
    assert parse_reading(body + b" " * (MAX_READING_BYTES - len(body))) == Reading(1.0, 2.0)
    with pytest.raises(AlertError) as caught:
        parse_reading(body + b" " * (MAX_READING_BYTES + 1 - len(body)))
    error = caught.value
    assert (error.code, error.zh, error.en) == (
        "alert.too_large",
        "传感器数据过大。",
        "The sensor reading is too large.",
    )


NOT_OBJECT = ("alert.invalid_reading", "传感器数据必须是 JSON 对象。", "The reading must be a JSON object.")
NO_VALUE = ("alert.invalid_reading", "传感器数据缺少数值 value。", "The reading needs a numeric `value`.")
BAD_AT = (
    "alert.invalid_reading",
    "传感器数据的时间 at 无效（带时区的 ISO 8601 或 Unix 秒）。",
    "The reading's `at` must be ISO 8601 with an offset, or unix seconds.",
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", NOT_OBJECT),
        (b"", NOT_OBJECT),
        (b'"text"', NOT_OBJECT),
        (b'{"at": 1}', NO_VALUE),
        (b'{"value": true, "at": 1}', NO_VALUE),
        (b'{"value": NaN, "at": 1}', NO_VALUE),
        (b'{"value": 1}', BAD_AT),
        (b'{"value": 1, "at": true}', BAD_AT),
        (b'{"value": 1, "at": Infinity}', BAD_AT),
        (b'{"value": 1, "at": "yesterday"}', BAD_AT),
        (b'{"value": 1, "at": "2026-06-01T08:00:00"}', BAD_AT),
        (b'{"value": 1, "at": [1]}', BAD_AT),
    ],
)
def test_a_bad_reading_is_refused_with_its_reason(body: bytes, expected: tuple[str, str, str]) -> None:
    """Not an object, no finite number value, or no time with a zone: each has its message."""
    with pytest.raises(AlertError) as caught:
        parse_reading(body)
    assert (caught.value.code, caught.value.zh, caught.value.en) == expected
    assert caught.value.kind == "bad_request"
