"""Shared fixtures: databases (SQLite always, PostgreSQL when given), the app, users and tokens."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("BROADCAST_TEST_DATABASE_URL")
MQTT_URL = os.environ.get("BROADCAST_TEST_MQTT_URL")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_driver_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, and a private PostgreSQL schema when one is given."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not PG_URL:
        pytest.skip("BROADCAST_TEST_DATABASE_URL not set")
    base = _pg_driver_url(PG_URL)
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file for tests that need not run on PostgreSQL too."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def make_app(instance: Path, database_url: str, **overrides: Any) -> Any:
    """An initialized app on a temp instance folder (schema, signing key, admin 'admin')."""
    from broadcast import create_app
    from broadcast.platform import Platform
    from broadcast.setup import initialize

    settings = {
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": "vbt" + secrets.token_hex(4),
        "QUIET_HOURS": "",
        "TTS_ENGINES": "espeak",
        "START_LEAD_MS": 300,
        "MQTT_TIMEOUT_S": 0.3,
        **overrides,
    }
    platform = Platform.from_settings(instance, settings)
    initialize(platform, "admin", "admin-password-123")
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": overrides.get("WTF_CSRF_ENABLED", True)}, platform=platform)
    return app


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """The app on SQLite with no broker reachable (publishing fails; commands wait for the worker)."""
    application = make_app(tmp_path / "instance", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    yield application
    application.extensions["platform"].close()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client of the app."""
    return app.test_client()
