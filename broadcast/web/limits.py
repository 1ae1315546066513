"""What any request may carry: JSON depth, size and numbers, ids in range, no control characters.

Checked once, before any view runs, so no service ever sees a NaN, a 10**30 id, a NUL byte or a JSON
document nested 100 000 deep, and a client that sends them gets a clear error instead of a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Flask, Request, request

from broadcast.errors import BroadcastError, not_found
from broadcast.web import rate_limits

MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 1024 * 1024
MAX_INT = 2**53  # beyond this a JSON number is not an exact integer anywhere
ID_MAX = 2**31 - 1
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Text may keep tab and newline; no other C0/C1 control character is ever accepted.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Path arguments that are integer keys, whatever their converter: beyond the column's range they are unknown.
INTEGER_IDS = {"alert_id", "broadcast_id", "clip_id", "playlist_id", "schedule_id", "token_id"}


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _too_deep(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


class StrictJSON:
    """The json module requests parse with: no NaN or Infinity, no runaway nesting (the answer side is untouched)."""

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        """Parse a request body, raising ValueError (Flask's 400) on anything a client should not send."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if _too_deep(data):
            raise ValueError("JSON nested too deeply")
        return data

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        """Serialize as the standard module does."""
        return json.dumps(obj, **kwargs)


class StrictRequest(Request):
    """Flask's request, parsing JSON bodies with StrictJSON."""

    @property  # type: ignore[override]
    def json_module(self) -> type[StrictJSON]:
        """The parser of request bodies."""
        return StrictJSON

    @json_module.setter
    def json_module(self, _value: Any) -> None:
        """Flask hands every request the app's JSON provider; bodies keep the strict parser."""


def _bad_json() -> BroadcastError:
    return BroadcastError(
        "invalid_json",
        f"请求体不是有效的 JSON：不能含 NaN 或 Infinity，数字不能超出范围，嵌套不能超过 {MAX_JSON_DEPTH} 层。",
        f"The body is not valid JSON (no NaN or Infinity, numbers in range, nesting at most {MAX_JSON_DEPTH} deep).",
        kind="bad_request",
    )


def _bad_characters(where: str) -> BroadcastError:
    return BroadcastError(
        "invalid_characters",
        f"{where} 含有不允许的控制字符（如 NUL 或终端转义符），请删除后重试。",
        f"{where} contains control characters (such as NUL or terminal escapes); remove them and retry.",
        kind="invalid",
        field=where,
    )


def _walk(data: Any, where: str) -> None:
    """Refuse control characters in any string or key, and integers no JSON reader holds exactly."""
    stack = [(data, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if CONTROL.search(item):
                raise _bad_characters(path)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                raise BroadcastError(
                    "number_out_of_range",
                    f"{path} 的数值超出范围。",
                    f"The number in {path} is out of range.",
                    field=path,
                )
        elif isinstance(item, dict):
            for key, value in item.items():
                if ANY_CONTROL.search(key):
                    raise _bad_characters(path)
                stack.append((value, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(item))


def check_request() -> None:
    """Before any view: ids in range, no control characters in the path, query or form, a sane JSON body."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and name in INTEGER_IDS and value.isascii() and value.lstrip("-").isdigit():
            value = int(value[:20])
        if isinstance(value, int) and not 0 <= value <= ID_MAX:
            raise not_found("对象", "Object", name)
    if ANY_CONTROL.search(request.path):
        raise _bad_characters("path")
    for key, value in request.args.items(multi=True):
        if ANY_CONTROL.search(key) or ANY_CONTROL.search(value):
            raise _bad_characters(key if not ANY_CONTROL.search(key) else "query")
    if request.method not in WRITES:
        return
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        for key, value in request.form.items(multi=True):
            if ANY_CONTROL.search(key or "") or CONTROL.search(value or ""):
                raise _bad_characters(key if key and not ANY_CONTROL.search(key) else "form")
        for key, upload in request.files.items(multi=True):
            if ANY_CONTROL.search(key or "") or ANY_CONTROL.search(upload.filename or ""):
                raise _bad_characters("file")
        return
    if not request.is_json:
        return
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise BroadcastError(
            "too_large",
            f"JSON 请求体不能超过 {MAX_JSON_BYTES // 1024} KB。",
            f"A JSON body is at most {MAX_JSON_BYTES // 1024} KB.",
            kind="too_large",
        )
    if not request.get_data(cache=True):
        return
    data = request.get_json(silent=True)
    if data is None:
        raise _bad_json()
    _walk(data, "")


def init_app(app: Flask) -> None:
    """Strict JSON parsing, the input checks and the rate limits (per token on the API, per address on login)."""
    app.request_class = StrictRequest
    app.before_request(check_request)
    rate_limits.init_app(app)
