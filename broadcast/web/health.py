"""/healthz, /readyz and /metrics: unauthenticated, cheap, for load balancers and monitoring."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify

from broadcast.db import schema_head
from broadcast.services import health
from broadcast.web.context import db, platform

bp = Blueprint("health", __name__)
# A worker beats every few seconds; three missed beats mean it is gone.
WORKER_MAX_AGE_S = 15.0


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers (no dependency is checked)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Database (and its schema), broker and a fresh worker heartbeat; 503 naming each failing check."""
    checks = [
        health.check_database(db(), schema_head()),
        health.check_broker(platform().mqtt_url),
        health.check_worker(db(), WORKER_MAX_AGE_S),
    ]
    ready = all(c.ok for c in checks)
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {c.name: {"ok": c.ok, **({"detail": c.detail} if c.detail else {})} for c in checks},
    }
    return jsonify(body), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text: speakers by township, deliveries, broadcasts, alerts, schedules, outbox, worker heartbeat."""
    return Response(health.metrics_text(db()), mimetype="text/plain; version=0.0.4; charset=utf-8")


def init_app(app: Flask) -> None:
    """Register the monitoring routes."""
    app.register_blueprint(bp)
