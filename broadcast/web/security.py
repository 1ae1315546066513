"""Authentication (console sessions, API bearer tokens), role checks, CSRF and security headers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, g, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect

from broadcast.errors import BroadcastError
from broadcast.models import User
from broadcast.services import accounts
from broadcast.web.context import db

F = TypeVar("F", bound=Callable[..., Any])
csrf = CSRFProtect()

UNAUTHORIZED = BroadcastError(
    "unauthorized", "缺少或无效的访问令牌。", "Missing or invalid API token.", kind="unauthorized"
)


def _load_session_user() -> None:
    user_id = session.get("user_id")
    if user_id is None:
        return
    user = db().get(User, user_id)
    if user is None or not user.active or session.get("pw") != user.password_hash[-12:]:
        session.clear()
        return
    g.user = user


def api_auth(view: F) -> F:
    """Require a valid bearer token (or, for the console's own calls, a logged-in session)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = accounts.user_for_token(db(), header[7:].strip())
            if user is None:
                raise UNAUTHORIZED
            db().commit()
            g.user = user
        elif g.get("user") is None:
            raise UNAUTHORIZED
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            csrf.protect()  # the console calls the API with its session cookie: it must prove the origin
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def login_required(view: F) -> F:
    """Console pages: send anonymous visitors to the login page."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            return redirect(url_for("console.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    )
    return response


def init_app(app: Flask) -> None:
    """Install CSRF protection (forms), the session loader and the security headers."""
    csrf.init_app(app)
    app.before_request(_load_session_user)
    app.after_request(_headers)
