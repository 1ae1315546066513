"""The one error type of the schedules package."""

from __future__ import annotations


class ScheduleError(Exception):
    """Base error of the schedules package: a stable code, a kind and a message in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str, *, kind: str = "invalid", **details: object) -> None:
        super().__init__(en)
        self.code = code  # stable machine code, e.g. "schedule.never_fires"
        self.kind = kind  # invalid | not_found | conflict
        self.zh = zh  # message for Chinese users (the default)
        self.en = en
        self.details = details  # JSON-safe extra facts
