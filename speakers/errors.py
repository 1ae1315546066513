"""The one error type of the speakers package."""

from __future__ import annotations


class SpeakerError(Exception):
    """Base error of the speakers package: a stable code, a kind and a message in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str, *, kind: str = "invalid", **details: object) -> None:
        super().__init__(en)
        self.code = code  # stable machine code, e.g. "speakers.bad_key_file"
        self.kind = kind  # invalid | too_large | unsupported | not_found | unavailable | forbidden | conflict
        self.zh = zh  # message for Chinese users (the default)
        self.en = en
        self.details = details  # JSON-safe extra facts (limits, measured values)


def unavailable(code: str, zh: str, en: str, **details: object) -> SpeakerError:
    """Build an error for a broker, server or device that does not answer."""
    return SpeakerError(code, zh, en, kind="unavailable", **details)
