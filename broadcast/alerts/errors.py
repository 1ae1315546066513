"""The one error type of the alert library (a BroadcastError, so the web layer shows it in the common shape)."""

from __future__ import annotations

from typing import Any

from broadcast.errors import BroadcastError


class AlertError(BroadcastError):
    """A CAP message, trigger or alert setting that is refused: code `alert.*`, messages in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str, *, kind: str = "bad_request", **details: Any) -> None:
        super().__init__(f"alert.{code}", zh, en, kind=kind, **details)
