"""Per-request access to the platform, the database session and the current user."""

from __future__ import annotations

from flask import current_app, g, request
from sqlalchemy.orm import Session

from broadcast.models import User
from broadcast.platform import Platform
from broadcast.services.broadcasts import Rules
from broadcast.services.quiet_hours import QuietHours


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


def current_user() -> User | None:
    """The user authenticated for this request, if any."""
    return g.get("user")


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


def rules() -> Rules:
    """Broadcast rules of the running app."""
    return rules_from(platform())


def rules_from(p: Platform) -> Rules:
    """Broadcast rules from a platform's settings."""
    settings = p.settings
    return Rules(
        quiet_hours=QuietHours.parse(settings["QUIET_HOURS"]),
        timezone=p.timezone,
        start_lead_s=settings["START_LEAD_MS"] / 1000,
        ttl_s=float(settings["COMMAND_TTL_S"]),
        default_volume=settings["DEFAULT_VOLUME"],
        max_repeat=settings["MAX_REPEAT"],
    )
