"""The console's language: the user's own choice, else the deployment's LANGUAGE setting (never the browser's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, g
from flask_babel import Babel

from broadcast.services.user_admin import LANGUAGES  # zh is the source of every message; en is translations/

babel = Babel()


def ui_language() -> str:
    """The language of this request's console pages: the user's setting, else the deployment's default."""
    chosen = getattr(g.get("user"), "language", None)
    if chosen in LANGUAGES:
        return chosen
    default = current_app.extensions["platform"].settings["LANGUAGE"]
    return default if default in LANGUAGES else "zh"


def init_app(app: Flask) -> None:
    """Install Flask-Babel with the per-user language rule (catalogues in broadcast/translations)."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "zh")
    babel.init_app(app, locale_selector=ui_language)
    app.jinja_env.globals["ui_language"] = ui_language


def message_of(error: object) -> str:
    """A shaped error's message (it carries both) in this request's console language."""
    return error.en if ui_language() == "en" else error.zh  # type: ignore[attr-defined]


def texts(labels: Mapping[str, Any]) -> dict[str, str]:
    """Lazily translated labels resolved to plain strings (for `tojson` and for this request)."""
    return {key: str(value) for key, value in labels.items()}
