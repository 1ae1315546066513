"""The spoken text: title with level colour, headline, description, instruction, capped at a sentence end."""

from __future__ import annotations

from broadcast.alerts import cancel_text, message_text, parse
from tests.alerts.corpus import InfoSpec, cap


def _info(**kwargs: object):
    return parse(cap(infos=[InfoSpec(**kwargs)])).infos[0]  # type: ignore[arg-type]


def test_the_message_names_event_colour_headline_description_and_instruction() -> None:
    text = message_text(_info(), status="Actual", level="orange")
    assert text.startswith("暴雨橙色预警。通山县气象台发布暴雨橙色预警信号。")
    assert "50毫米" in text
    assert text.endswith("远离河道。")


def test_exercise_and_test_carry_a_prefix() -> None:
    assert message_text(_info(), status="Exercise", level="red").startswith("演练：暴雨红色预警。")
    assert message_text(_info(), status="Test", level="red").startswith("测试：")


def test_long_text_is_cut_at_a_sentence_end() -> None:
    long = "".join(f"第{n}句说明，内容很长很长很长很长。" for n in range(40))
    text = message_text(_info(description=long), status="Actual", level="red")
    assert 150 <= len(text) <= 200
    assert text.endswith("。")


def test_an_event_already_named_a_warning_is_not_repeated() -> None:
    info = _info(event="高温红色预警", headline="高温红色预警")
    assert message_text(info, status="Actual", level="red").startswith("高温红色预警。预计")


def test_cancel_notice() -> None:
    assert cancel_text(_info(), status="Actual", level="orange") == "现在解除暴雨橙色预警。"
    assert cancel_text(None, status="Exercise", level=None) == "演练：现在解除预警。"
