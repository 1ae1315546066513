"""Authentication (console sessions via Flask-Login, API bearer tokens), CSRF and security headers."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, Response, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import User
from broadcast.services import accounts
from broadcast.services.accounts import Principal
from broadcast.web import caches
from broadcast.web.context import db

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.session_protection = "basic"

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# A token's principal is kept this long per process: a revoked token, a disabled user or a new role or region
# is refused or applied by the other processes within this bound (by this one at once: its commit drops it).
TOKEN_CACHE_S = 1.5
TOKEN_CACHE_SIZE = 10_000
SELF_SERVICE = {"admin_api.change_password"}  # what a read-only viewer may still change: their own password
READ_ONLY = forbidden("只读用户不能修改任何内容。", "A viewer has read-only access.")
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    ),
)
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


def _bearer_api_call(req: Request) -> bool:
    return req.path.startswith("/api/") and req.headers.get("Authorization", "").startswith("Bearer ")


def _load_session_user() -> None:
    if _bearer_api_call(request):
        return  # a token call: the session cookie (if any) is never read
    user = current_user._get_current_object()  # type: ignore[attr-defined]
    if getattr(user, "is_authenticated", False):
        g.user = user
        g.auth_kind = "session"
    elif "_user_id" in session:
        session.clear()  # an ended session: forget it in the browser too


def _token_principal(token: str) -> Principal | None:
    cache: caches.TtlCache[Principal] = current_app.extensions["token_principals"]
    key = hashlib.sha256(token.encode()).digest()
    found = cache.get(key)
    if found is None:
        made_in = caches.generation()
        found = accounts.principal_for_token(db(), token)
        if found is None:
            return None
        if accounts.note_token_use(db(), found):
            db().commit()  # last_used_at, at most once a minute: a read stays a read
            made_in = caches.generation()
        cache.put(key, found, made_in)
    return found


def authenticate() -> Principal:
    """Who calls the API: a bearer token's principal (cached briefly) or the console session's user; else 401."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        principal = _token_principal(header[7:].strip())
        if principal is None:
            raise UNAUTHORIZED
        g.auth_kind = "token"
        return principal
    user = g.get("user")
    if user is None:
        raise UNAUTHORIZED
    if request.method not in SAFE_METHODS:
        csrf.protect()  # the console calls the API with its session cookie: it must prove the origin
    return Principal(user.id, user.role, user.region_code, None, None)


def load_caller(principal: Principal) -> User:
    """The calling user as an ORM object in this request's session (g.user), still active."""
    if g.get("auth_kind") != "token":
        return g.user
    user = db().get(User, principal.user_id)
    if user is None or not user.active:
        raise UNAUTHORIZED
    g.user = user
    return user


def api_auth(view: F) -> F:
    """Require a valid bearer token (or, for the console's own calls, a logged-in session)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = load_caller(authenticate())
        if user.role == "viewer" and request.method not in SAFE_METHODS and request.endpoint not in SELF_SERVICE:
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
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        if name not in headers:
            headers.add(name, value)
    return response


class TokenAwareSessions(SecureCookieSessionInterface):
    """Cookie sessions for the console; an API call with a bearer token never reads or writes the cookie."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        """No session (a read-only empty one) for a bearer-token API call; the signed cookie otherwise."""
        if _bearer_api_call(request):
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Install the sessions, CSRF protection (forms), Flask-Login's loader, the token cache and security headers."""
    app.session_interface = TokenAwareSessions()
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["token_principals"] = caches.TtlCache[Principal](TOKEN_CACHE_S, TOKEN_CACHE_SIZE)
    app.before_request(_load_session_user)
    app.after_request(_headers)
