"""Pin: where an alert's Chinese warning level is read from (parameters, then event and headline, then severity)."""

from __future__ import annotations

import pytest

from broadcast.alerts import Info
from broadcast.alerts.levels import level_of, stated_level


def _info(
    *, event: str = "暴雨", headline: str = "", severity: str = "Unknown", parameters: tuple[tuple[str, str], ...] = ()
) -> Info:
    return Info(
        language="zh-CN",
        categories=("Met",),
        event=event,
        urgency="Immediate",
        severity=severity,
        certainty="Observed",
        headline=headline,
        parameters=parameters,
    )


@pytest.mark.parametrize("name", ["预警级别", "level", "warningLevel", "awareness_level", "颜色"])
def test_a_level_parameter_states_the_level_before_the_texts(name: str) -> None:
    """A level parameter wins over the event and headline, and counts as stated."""
    info = _info(headline="暴雨蓝色预警", severity="Minor", parameters=((name, "橙色"),))
    assert level_of(info) == ("orange", True)


def test_other_parameters_do_not_state_a_level() -> None:
    """A parameter outside the level names is not read, even when it names a colour."""
    info = _info(severity="Minor", parameters=(("备注", "红色"), ("level", "未知")))
    assert level_of(info) == ("blue", False)


def test_the_event_then_the_headline_state_the_level() -> None:
    """Without a level parameter the event is read first, then the headline; both count as stated."""
    assert level_of(_info(event="暴雨黄色预警", headline="暴雨红色预警")) == ("yellow", True)
    assert level_of(_info(headline="发布暴雨Ⅱ级预警")) == ("orange", True)


@pytest.mark.parametrize(
    ("severity", "level"),
    [("Extreme", "red"), ("Severe", "orange"), ("Moderate", "yellow"), ("Minor", "blue"), ("Unknown", None)],
)
def test_without_a_stated_level_the_severity_maps_to_one(severity: str, level: str | None) -> None:
    """GB/T 35965.1: Extreme/Severe/Moderate/Minor = red/orange/yellow/blue, read not stated."""
    assert level_of(_info(severity=severity)) == (level, False)


def test_an_empty_text_states_nothing() -> None:
    """No words, no level."""
    assert stated_level("") is None
