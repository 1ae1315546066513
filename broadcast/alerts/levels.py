"""Chinese warning levels (红/橙/黄/蓝, Ⅰ–Ⅳ级) read from a CAP info, and their names."""

from __future__ import annotations

import re

from broadcast.alerts.model import Info

LEVELS = ("red", "orange", "yellow", "blue")
COLOUR_ZH = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
GRADE_ZH = {"red": "Ⅰ级", "orange": "Ⅱ级", "yellow": "Ⅲ级", "blue": "Ⅳ级"}
# GB/T 35965.1: 特别重大/重大/较大/一般 = Extreme/Severe/Moderate/Minor = red/orange/yellow/blue.
BY_SEVERITY = {"Extreme": "red", "Severe": "orange", "Moderate": "yellow", "Minor": "blue"}
_WORDS = {
    "red": r"红色|(?<![IVⅠⅡⅢⅣ])(?:Ⅰ|I|一)\s*级|\bred\b",
    "orange": r"橙色|(?<![IVⅠⅡⅢⅣ])(?:Ⅱ|II|二)\s*级|\borange\b",
    "yellow": r"黄色|(?<![IVⅠⅡⅢⅣ])(?:Ⅲ|III|三)\s*级|\byellow\b",
    "blue": r"蓝色|(?<![IVⅠⅡⅢⅣ])(?:Ⅳ|IV|四)\s*级|\bblue\b",
}
_ANY = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _WORDS.items()), re.IGNORECASE)
LEVEL_PARAMETERS = ("预警级别", "level", "warningLevel", "awareness_level", "颜色")


def stated_level(text: str) -> str | None:
    """The level a text names last (a headline "由橙色升级为红色" is red now), or None."""
    found = None
    for match in _ANY.finditer(text or ""):
        found = match.lastgroup
    return found


def level_of(info: Info) -> tuple[str | None, bool]:
    """The info's level and whether the message states it (True) or it was read from the severity (False)."""
    for name, value in info.parameters:
        if name in LEVEL_PARAMETERS and (level := stated_level(value)):
            return level, True
    for text in (info.event, info.headline):
        if level := stated_level(text):
            return level, True
    return BY_SEVERITY.get(info.severity), False
