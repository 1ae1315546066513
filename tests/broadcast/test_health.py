"""/healthz, /readyz and /metrics: what monitoring sees, and that a dead worker or broker turns readiness red."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from broadcast.services import health
from tests.broadcast.conftest import HUANGSHA, seed_county
from tests.conftest import make_app


@pytest.fixture
def listening_broker() -> Iterator[str]:
    """A TCP port that accepts connections, standing in for the broker's listener in the readiness probe."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"mqtt://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def ready_app(tmp_path: Path, database_url: str, listening_broker: str) -> Iterator[Any]:
    """An app whose database and broker answer, on both databases."""
    application = make_app(tmp_path / "instance", database_url, MQTT_URL=listening_broker)
    yield application
    application.extensions["platform"].close()


def _beat(app: Any, age_s: float) -> None:
    with app.extensions["platform"].db.transaction() as session:
        health.beat(session, started_at=time.time() - 60, now=time.time() - age_s)


def test_healthz_answers_without_login(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_names_every_failing_check(client: Any) -> None:
    """The `app` fixture's broker port is closed and no worker ever ran: 503 naming both, database fine."""
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == {"ok": True}
    assert checks["broker"]["ok"] is False
    assert checks["worker"] == {"ok": False, "detail": "no worker has ever run"}


def test_readyz_follows_the_worker_heartbeat(ready_app: Any) -> None:
    client = ready_app.test_client()
    _beat(ready_app, age_s=1)
    fresh = client.get("/readyz")
    assert fresh.status_code == 200, fresh.get_json()
    assert fresh.get_json()["status"] == "ready"
    _beat(ready_app, age_s=16)  # three beats missed: the worker is gone
    stale = client.get("/readyz")
    assert stale.status_code == 503
    assert stale.get_json()["checks"]["worker"]["detail"].startswith("last heartbeat 16 s ago")
    _beat(ready_app, age_s=0)
    assert client.get("/readyz").status_code == 200


def test_readyz_refuses_an_outdated_schema(ready_app: Any) -> None:
    _beat(ready_app, age_s=0)
    with ready_app.extensions["platform"].db.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = ready_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "broadcast db upgrade" in response.get_json()["checks"]["database"]["detail"]


def test_metrics_parse_and_count_the_fleet(ready_app: Any) -> None:
    seed_county(ready_app)
    _beat(ready_app, age_s=2)
    response = ready_app.test_client().get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }
    # the demo county: 12 speakers in 黄沙铺镇, all offline until their agents report
    assert samples[("broadcast_speakers", (("state", "offline"), ("township", HUANGSHA)))] == 12
    assert ("broadcast_speakers", (("state", "online"), ("township", HUANGSHA))) not in samples
    assert 2 <= samples[("broadcast_worker_heartbeat_age_seconds", ())] < 60
    assert samples[("broadcast_outbox_unpublished", ())] == 0
    families = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"broadcast_deliveries", "broadcast_broadcasts", "broadcast_alerts", "broadcast_schedules"} <= families


def test_console_banner_while_the_worker_is_down(client: Any) -> None:
    from tests.broadcast.test_console import log_in

    assert log_in(client, "admin", "admin-password-123").status_code == 302
    page = client.get("/speakers").get_data(as_text=True)
    assert 'data-banner="worker-down"' in page  # the app fixture runs no worker
    _beat(client.application, age_s=1)
    assert 'data-banner="worker-down"' not in client.get("/speakers").get_data(as_text=True)
    _beat(client.application, age_s=20)
    assert 'data-banner="worker-down"' in client.get("/speakers").get_data(as_text=True)
