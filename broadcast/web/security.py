"""Authentication (console sessions via Flask-Login, API bearer tokens), CSRF and security headers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, g, redirect, request, session, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import User
from broadcast.services import accounts
from broadcast.web.context import db

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.session_protection = "basic"

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SELF_SERVICE = {"admin_api.change_password"}  # what a read-only viewer may still change: their own password
READ_ONLY = forbidden("只读用户不能修改任何内容。", "A viewer has read-only access.")
UNAUTHORIZED = BroadcastError(
    "unauthorized", "缺少或无效的访问令牌。", "Missing or invalid API token.", kind="unauthorized"
)


@login_manager.user_loader
def load_user(key: str) -> User | None:
    """The user of a session key "id:epoch", while the epoch is current (logout and changes bump it)."""
    ident, _, epoch = key.partition(":")
    if not (ident.isdigit() and epoch.isdigit()) or len(ident) > 10:
        return None
    user = db().get(User, int(ident))
    if user is None or not user.active or user.get_id() != key:
        return None
    return user


def _load_session_user() -> None:
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    if getattr(user, "is_authenticated", False):
        g.user = user
        g.auth_kind = "session"
    elif "_user_id" in session:
        session.clear()  # an ended session: forget it in the browser too


def api_auth(view: F) -> F:
    """Require a valid bearer token (or, for the console's own calls, a logged-in session)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            user = accounts.user_for_token(db(), header[7:].strip())
            if user is None:
                raise UNAUTHORIZED
            if db().dirty:
                db().commit()  # last_used_at, at most once a minute: a read stays a read
            g.user = user
            g.auth_kind = "token"
        elif g.get("user") is None:
            raise UNAUTHORIZED
        elif request.method not in SAFE_METHODS:
            csrf.protect()  # the console calls the API with its session cookie: it must prove the origin
        if g.user.role == "viewer" and request.method not in SAFE_METHODS and request.endpoint not in SELF_SERVICE:
            raise READ_ONLY
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
    """Install CSRF protection (forms), Flask-Login's session loader and the security headers."""
    csrf.init_app(app)
    login_manager.init_app(app)
    app.before_request(_load_session_user)
    app.after_request(_headers)
