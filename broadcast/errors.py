"""The one error type of the server and the one JSON body every error is shown as."""

from __future__ import annotations

from typing import Any, Protocol

STATUS_BY_KIND = {
    "invalid": 422,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unsupported": 415,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}


class ShapedError(Protocol):
    """What every package's base error carries (media, speakers and broadcast share the shape)."""

    code: str
    kind: str
    zh: str
    en: str
    details: dict[str, Any]


class BroadcastError(Exception):
    """Base error of the server: a stable code, a kind and a message in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str, *, kind: str = "invalid", **details: Any) -> None:
        super().__init__(en)
        self.code = code
        self.kind = kind
        self.zh = zh
        self.en = en
        self.details = details


def not_found(what_zh: str, what_en: str, ident: object) -> BroadcastError:
    """An unknown id of some kind."""
    return BroadcastError("not_found", f"{what_zh}不存在：{ident}", f"{what_en} not found: {ident}", kind="not_found")


def forbidden(zh: str = "您没有权限执行此操作。", en: str = "You are not allowed to do this.") -> BroadcastError:
    """The user is known but not allowed."""
    return BroadcastError("forbidden", zh, en, kind="forbidden")


def status_of(error: ShapedError) -> int:
    """HTTP status for an error's kind."""
    return STATUS_BY_KIND.get(error.kind, 400)


def error_body(error: ShapedError, lang: str) -> dict[str, Any]:
    """The single JSON error shape: {"error": {"code", "message", ...details}}."""
    message = error.en if lang == "en" else error.zh
    body: dict[str, Any] = {"code": error.code, "message": message}
    if error.details:
        body["details"] = error.details
    return {"error": body}


def is_shaped(exc: BaseException) -> bool:
    """True for any package error that carries code, kind and both messages."""
    return all(hasattr(exc, name) for name in ("code", "kind", "zh", "en"))
