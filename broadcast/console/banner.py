"""The banner every console page shows while the worker is down (nothing would be sent or recorded)."""

from __future__ import annotations

from typing import Any

from flask import g

from broadcast.console.views import console
from broadcast.services import health
from broadcast.web.context import db

# The same threshold as /readyz: three missed heartbeats.
WORKER_DOWN_AFTER_S = 15.0


@console.app_context_processor
def worker_banner() -> dict[str, Any]:
    """`worker_down` for logged-in pages: no heartbeat from the worker for WORKER_DOWN_AFTER_S."""
    if g.get("user") is None:
        return {"worker_down": False}
    age = health.heartbeat_age(db())
    return {"worker_down": age is None or age > WORKER_DOWN_AFTER_S}
