"""The Flask app factory: it only wires settings, database, security, API, console and media routes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from broadcast.platform import Platform
from broadcast.settings import instance_path


def create_app(test_config: dict[str, Any] | None = None, *, platform: Platform | None = None) -> Flask:
    """Build the web app: settings, database, security, API, console and media routes."""
    overrides = dict(test_config or {})
    instance = Path(overrides.pop("INSTANCE", None) or instance_path())
    if platform is None:
        platform = Platform.from_settings(instance, overrides)
        # A web process never serves a schema older than its code (an upgrade is `broadcast db upgrade`).
        try:
            platform.db.require_current()
        except Exception:
            platform.close()
            raise
    app = Flask(__name__, instance_path=str(platform.instance), instance_relative_config=True)
    settings = platform.settings
    app.config.update(
        SECRET_KEY=settings["SECRET_KEY"],
        MAX_CONTENT_LENGTH=settings["MAX_UPLOAD_MB"] * 1024 * 1024 + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=_cookie_secure(settings),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings["SESSION_HOURS"]),
        WTF_CSRF_TIME_LIMIT=None,
        JSON_AS_ASCII=False,
    )
    app.config.update({k: v for k, v in overrides.items() if k.isupper() and k not in settings})
    app.extensions["platform"] = platform
    if settings["PROXY_FIX"] > 0:
        hops = settings["PROXY_FIX"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    from broadcast import i18n
    from broadcast.web import errors, health, limits, media_route, security

    security.init_app(app)
    limits.init_app(app)
    errors.init_app(app)
    media_route.init_app(app)
    health.init_app(app)
    i18n.init_app(app)  # console language: the user's setting, else LANGUAGE

    from broadcast.web.api import api

    app.register_blueprint(api)
    from broadcast.web.alerts_api import alerts_api

    app.register_blueprint(alerts_api)
    from broadcast.web.admin_api import admin_api

    app.register_blueprint(admin_api)
    from broadcast.web.schedules_api import schedules_api

    app.register_blueprint(schedules_api)
    from broadcast.web.approvals_api import approvals_api

    app.register_blueprint(approvals_api)
    from broadcast.console import console

    app.register_blueprint(console)
    return app


def _cookie_secure(settings: dict[str, Any]) -> bool:
    """Secure cookies when told so, or (auto) when the deployment is served over HTTPS."""
    value = str(settings["SESSION_COOKIE_SECURE"]).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    return str(settings["PUBLIC_URL"]).lower().startswith("https://")
