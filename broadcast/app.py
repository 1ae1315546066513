"""The Flask app factory: it only wires settings, database, security, API, console and media routes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from broadcast.platform import Platform
from broadcast.settings import instance_path


def create_app(test_config: dict[str, Any] | None = None, *, platform: Platform | None = None) -> Flask:
    """Build the web app: settings, database, security, API, console and media routes."""
    overrides = dict(test_config or {})
    instance = Path(overrides.pop("INSTANCE", None) or instance_path())
    if platform is None:
        platform = Platform.from_settings(instance, overrides)
    app = Flask(__name__, instance_path=str(platform.instance), instance_relative_config=True)
    settings = platform.settings
    app.config.update(
        SECRET_KEY=settings["SECRET_KEY"],
        MAX_CONTENT_LENGTH=settings["MAX_UPLOAD_MB"] * 1024 * 1024 + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings["SESSION_HOURS"]),
        WTF_CSRF_TIME_LIMIT=None,
        JSON_AS_ASCII=False,
    )
    app.config.update({k: v for k, v in overrides.items() if k.isupper() and k not in settings})
    app.extensions["platform"] = platform
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    from broadcast.web import errors, media_route, security

    security.init_app(app)
    errors.init_app(app)
    media_route.init_app(app)

    from broadcast.web.api import api

    app.register_blueprint(api)
    from broadcast.console import console

    app.register_blueprint(console)
    return app
