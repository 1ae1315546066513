"""Pin: the spoken text of an alert at its edges (title, repeated headline, cleaning, the length cap)."""

from __future__ import annotations

from broadcast.alerts import Info, cancel_text, message_text
from broadcast.alerts.template import title


def _info(*, event: str = "暴雨", headline: str = "", description: str = "", instruction: str = "") -> Info:
    return Info(
        language="zh-CN",
        categories=("Met",),
        event=event,
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        headline=headline,
        description=description,
        instruction=instruction,
    )


def test_the_title_adds_the_level_colour_and_warning() -> None:
    """暴雨 + red = 暴雨红色预警; no or an unknown level gives 暴雨预警."""
    assert title(_info(), "red") == "暴雨红色预警"
    assert title(_info(), None) == "暴雨预警"
    assert title(_info(), "purple") == "暴雨预警"


def test_an_event_that_already_says_warning_or_alarm_is_kept() -> None:
    """An event naming 预警 or 警报 is the title as it is."""
    assert title(_info(event="防空警报"), "red") == "防空警报"
    assert title(_info(event="地震预警"), "blue") == "地震预警"


def test_the_parts_follow_the_title_each_ending_a_sentence() -> None:
    """Headline, description and instruction are joined directly, each closed with 。 unless it ends a sentence."""
    info = _info(headline="县气象台发布", description="雨大!", instruction="远离河道")
    assert message_text(info, status="Actual", level="red") == "暴雨红色预警。县气象台发布。雨大!远离河道。"


def test_a_headline_repeating_the_title_or_the_event_is_not_said_twice() -> None:
    """A headline equal to the coloured title, or to the bare event, is dropped."""
    said = message_text(_info(headline="暴雨红色预警", description="雨大。"), status="Actual", level="red")
    assert said == "暴雨红色预警。雨大。"
    said = message_text(_info(headline="暴雨", description="雨大。"), status="Actual", level="red")
    assert said == "暴雨红色预警。雨大。"


def test_markup_and_runs_of_space_are_cleaned() -> None:
    """Tags become a space and any run of white space one space, trimmed at both ends."""
    info = _info(event=" 暴雨 ", description=" 雨很大<br/>请  注意\n\t安全 ")
    assert message_text(info, status="Actual", level="red") == "暴雨红色预警。雨很大 请 注意 安全。"


def test_only_the_title_when_there_is_nothing_else_to_say() -> None:
    """No headline, description or instruction: the title alone, with its drill prefix."""
    assert message_text(_info(), status="Actual", level="orange") == "暴雨橙色预警。"
    assert message_text(_info(headline=" <b> </b> "), status="Test", level="orange") == "测试：暴雨橙色预警。"


def test_no_room_after_the_title_leaves_the_title_alone() -> None:
    """When the title fills max_chars exactly (or more), nothing of the body is added."""
    info = _info(description="雨很大。")
    assert message_text(info, status="Actual", level="red", max_chars=7) == "暴雨红色预警。"
    assert message_text(info, status="Actual", level="red", max_chars=3) == "暴雨红色预警。"


def test_the_body_fills_the_room_left_and_never_more() -> None:
    """With room for one character the text is exactly max_chars long; with room for the body it is whole."""
    info = _info(description="雨很大。")
    assert len(message_text(info, status="Actual", level="red", max_chars=8)) == 8
    assert message_text(info, status="Actual", level="red", max_chars=11) == "暴雨红色预警。雨很大。"


def test_the_cancel_notice_names_the_warning_it_lifts() -> None:
    """解除 with the title, the drill prefix, or just 预警 without an info."""
    assert cancel_text(_info(), status="Test", level="yellow") == "测试：现在解除暴雨黄色预警。"
    assert cancel_text(None, status="Actual", level="red") == "现在解除预警。"
