"""The spoken Chinese text of an alert: event, level colour, headline, description, instruction (≤ ~200 chars)."""

from __future__ import annotations

import re

from broadcast.alerts.levels import COLOUR_ZH
from broadcast.alerts.model import Info
from media import split_sentences

MAX_CHARS = 200
PREFIX = {"Exercise": "演练：", "Test": "测试："}
_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]{0,200}>")
_ENDS = ("。", "！", "？", "；", ".", "!", "?", ";")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", _TAG.sub(" ", text or "")).strip()


def _sentence(text: str) -> str:
    text = _clean(text)
    return text if not text or text.endswith(_ENDS) else text + "。"


def title(info: Info, level: str | None) -> str:
    """The event with its level colour, e.g. 暴雨红色预警 (the event's own words when it says 预警 already)."""
    event = _clean(info.event)
    if "预警" in event or "警报" in event:
        return event
    colour = COLOUR_ZH.get(level or "", "")
    return f"{event}{colour}预警"


def message_text(info: Info, *, status: str, level: str | None, max_chars: int = MAX_CHARS) -> str:
    """What speakers say: [演练/测试：]title。headline。description instruction, cut at a sentence end."""
    head = PREFIX.get(status, "") + _sentence(title(info, level))
    parts = [_sentence(p) for p in (info.headline, info.description, info.instruction) if _clean(p)]
    if parts and _clean(info.headline) in (title(info, level), _clean(info.event)):
        parts = parts[1:]
    body = "".join(parts)
    room = max_chars - len(head)
    if not body or room <= 0:
        return head
    return head + split_sentences(body, room)[0]


def cancel_text(info: Info | None, *, status: str, level: str | None) -> str:
    """The short 解除 notice played when an alert is cancelled."""
    what = title(info, level) if info is not None else "预警"
    return f"{PREFIX.get(status, '')}现在解除{what}。"
