"""Every error, from any package, becomes one JSON shape for the API and one page for the console."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from broadcast.errors import BroadcastError, error_body, is_shaped, status_of
from broadcast.i18n import ui_language
from broadcast.services import audit
from broadcast.web.context import client_address, close_db, db, lang, platform

logger = logging.getLogger(__name__)

HTTP_MESSAGES = {
    400: ("bad_request", "请求格式不正确。", "The request is malformed."),
    401: ("unauthorized", "请先登录或提供有效的令牌。", "Log in or give a valid token."),
    403: ("forbidden", "您没有权限执行此操作。", "You are not allowed to do this."),
    404: ("not_found", "页面或资源不存在。", "Not found."),
    405: ("method_not_allowed", "不支持该请求方法。", "Method not allowed."),
    413: ("too_large", "上传的文件太大。", "The upload is too large."),
    415: ("unsupported_media_type", "不支持的内容类型。", "Unsupported content type."),
    429: ("rate_limited", "请求过于频繁，请稍后再试。", "Too many requests; try again later."),
}


def wants_json() -> bool:
    """API calls and JSON clients get JSON; browsers on console pages get a page."""
    if request.path.startswith(("/api/", "/media/")):
        return True
    return request.accept_mimetypes.best == "application/json"


def respond(error: object, status: int) -> Response | tuple[str, int]:
    """Render a shaped error for this client."""
    json = wants_json()
    # API clients ask for their language; a console page follows the user's setting, like every other page.
    body = error_body(error, lang() if json else ui_language())  # type: ignore[arg-type]
    if json:
        response = jsonify(body)
        response.status_code = status
        return response
    return render_template("error.html", error=body["error"], status=status), status


def init_app(app: Flask) -> None:
    """Install the error handlers and the session teardown."""
    app.teardown_appcontext(close_db)

    @app.errorhandler(Exception)
    def handle(exc: Exception) -> Response | tuple[str, int]:
        if "db" in g:
            db().rollback()
        if is_shaped(exc):
            status = status_of(exc)  # type: ignore[arg-type]
            if status == 403:
                _record_refusal(exc.code)  # type: ignore[attr-defined]
            return respond(exc, status)  # type: ignore[arg-type]
        if isinstance(exc, HTTPException):
            code, zh, en = HTTP_MESSAGES.get(exc.code or 500, ("http_error", "请求失败。", exc.name))
            if code == "bad_request" and getattr(exc, "description", "").startswith("The CSRF"):
                code, zh, en = (
                    "csrf",
                    "页面已过期，请刷新后重试。",
                    "The form expired (CSRF check failed); reload and retry.",
                )
            if exc.code == 403:
                _record_refusal(code)
            return respond(BroadcastError(code, zh, en, kind="bad_request"), exc.code or 500)
        logger.exception("unexpected error on %s %s", request.method, request.path)
        internal = BroadcastError("internal", "服务器内部错误，请稍后再试。", "Internal server error.", kind="internal")
        return respond(internal, 500)


def _record_refusal(code: str) -> None:
    """A refused attempt (403) is an audit event of its own, written outside the request's rolled-back work."""
    user = g.get("user")  # an ORM user, or a token's light Caller on a cached API read (no username)
    actor = "-" if user is None else getattr(user, "username", None) or f"user#{user.id}"

    def write(session: Session) -> None:
        audit.record(
            session, actor, "access.denied", address=client_address(), method=request.method,
            path=request.path[:200], code=code,
        )  # fmt: skip

    try:
        platform().db.run(write)
    except Exception:  # the refusal itself must still be answered
        logger.exception("could not record a refused attempt")
