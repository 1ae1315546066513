"""Per-request access to the platform, the database session and the current user."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session

from broadcast.platform import Platform


def platform() -> Platform:
    """The platform of the running app."""
    return current_app.extensions["platform"]


def db() -> Session:
    """This request's session (closed at teardown)."""
    if "db" not in g:
        g.db = platform().db.session()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    """Teardown: close the request's session."""
    session = g.pop("db", None)
    if session is not None:
        session.close()


def lang() -> str:
    """The language the client asked for: en when it prefers English, zh otherwise."""
    asked = request.args.get("lang") or request.headers.get("X-Language")
    if asked in ("en", "zh"):
        return asked
    best = request.accept_languages.best_match(["zh", "en"], default=None)
    if best is None:
        return platform().settings["LANGUAGE"]
    return best


def client_address() -> str:
    """The client's address as seen by this server."""
    return request.remote_addr or "-"
