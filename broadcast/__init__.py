"""village-broadcast server (Flask app, domain, orchestration); `create_app` is the WSGI factory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None, **kwargs: Any) -> Flask:
    """Build the web app (see broadcast.app.create_app); imported lazily so the CLI starts fast."""
    from broadcast.app import create_app as factory

    return factory(test_config, **kwargs)
