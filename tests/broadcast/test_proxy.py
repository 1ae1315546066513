"""Behind a TLS proxy: Secure session cookies and the client's real address (PROXY_FIX)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import LoginAttempt
from tests.broadcast.test_console import csrf_of
from tests.conftest import free_port, make_app


def _login(app: Any, password: str = "admin-password-123") -> Any:  # noqa: S107
    """Log in as admin through a proxy that says the client is 203.0.113.9."""
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"username": "admin", "password": password, "csrf_token": token}
    return client.post("/login", data=form, headers={"X-Forwarded-For": "203.0.113.9"})


@pytest.mark.parametrize(
    ("public_url", "setting", "secure"),
    [
        ("https://gb.example.cn", "auto", True),
        ("http://127.0.0.1:8080", "auto", False),
        ("http://127.0.0.1:8080", "true", True),
        ("https://gb.example.cn", "false", False),
    ],
)
def test_session_cookie_secure(tmp_path: Path, sqlite_url: str, public_url: str, setting: str, secure: bool) -> None:
    broker = f"mqtt://127.0.0.1:{free_port()}"
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=broker, PUBLIC_URL=public_url, SESSION_COOKIE_SECURE=setting)
    response = _login(app)
    assert response.status_code == 302
    assert ("; Secure" in response.headers["Set-Cookie"]) is secure
    app.extensions["platform"].close()


@pytest.mark.parametrize(("hops", "recorded"), [(1, "203.0.113.9"), (0, "127.0.0.1")])
def test_proxy_fix_trusts_only_configured_hops(tmp_path: Path, sqlite_url: str, hops: int, recorded: str) -> None:
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", PROXY_FIX=hops)
    assert _login(app, "wrong").status_code == 200  # the form again, with an error
    with app.extensions["platform"].db.transaction() as session:
        addresses = set(session.scalars(select(LoginAttempt.address)))
    assert addresses == {recorded}
    app.extensions["platform"].close()
