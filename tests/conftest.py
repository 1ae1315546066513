"""Shared fixtures: databases (SQLite always, PostgreSQL when given), the app, users and tokens."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.requires import need

PG_URL = os.environ.get("BROADCAST_TEST_DATABASE_URL")
MQTT_URL = os.environ.get("BROADCAST_TEST_MQTT_URL")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until check() returns something truthy (a file, a row, a receipt) and return it, or fail saying `what`.

    The bound is generous on purpose: it only limits how long a broken test hangs, it never paces a passing one.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # not there yet (a connection refused, a file half written)
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: last={last!r}")
        time.sleep(interval)


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
    need(PG_URL, "PostgreSQL: set BROADCAST_TEST_DATABASE_URL=postgresql://user@host:port/db")
    assert PG_URL
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
        **dict.fromkeys(("API_RATE_LIMIT", "API_READ_RATE_LIMIT", "LOGIN_RATE_LIMIT"), "100000/minute"),  # tests hurry
        **overrides,
    }
    platform = Platform.from_settings(instance, settings)
    initialize(platform, "admin", "admin-password-123")
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": overrides.get("WTF_CSRF_ENABLED", True)}, platform=platform)
    return app


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The app on each database (SQLite; PostgreSQL when given) with no broker reachable (commands wait)."""
    application = make_app(tmp_path / "instance", database_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    yield application
    application.extensions["platform"].close()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """A command run in-process (`broadcast ...` through CliRunner) configures logging for a real program: a
    terminal handler and a log file in its instance. Give the root logger back as it was after every test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
