"""Split long text into pieces an engine accepts, at sentence boundaries first."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;\n]+|$)")
_CLAUSE = re.compile(r"[^，、：,:]*(?:[，、：,:]+|$)")


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [p for p in pattern.findall(text) if p.strip()]


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Pieces of at most MAX_CHARS: whole sentences packed together, long ones cut at commas, then hard."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    units: list[str] = []
    for sentence in _pieces(text.strip(), _SENTENCE):
        sentence = sentence.strip()
        if len(sentence) <= max_chars:
            units.append(sentence)
            continue
        for clause in _pieces(sentence, _CLAUSE):
            while len(clause) > max_chars:
                units.append(clause[:max_chars])
                clause = clause[max_chars:]
            if clause.strip():
                units.append(clause.strip())
    chunks: list[str] = []
    for unit in units:
        if chunks and len(chunks[-1]) + len(unit) <= max_chars:
            chunks[-1] += unit
        else:
            chunks.append(unit)
    return chunks
