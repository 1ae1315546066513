"""Console sessions: `next` stays on this site, logout and account changes end every copy of a session,
login throttling slows one (name, address) pair with growing waits (429) and an admin can lift it."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import AuditEvent, LoginAttempt, utcnow
from broadcast.services import accounts, user_admin
from tests.broadcast.conftest import DALU, seed_county
from tests.broadcast.test_console import csrf_of
from tests.conftest import free_port, make_app

LIMITS = {"max_failures": 5, "lock_seconds": 900}


@pytest.fixture
def seeded(app: Any) -> Any:
    """The demo county with users of every role."""
    seed_county(app)
    return app


def log_in(client: Any, username: str, password: str, *, address: str = "127.0.0.1", query: str = "") -> Any:
    """Post the login form from `address`, as a browser there would."""
    environ = {"REMOTE_ADDR": address}
    token = csrf_of(client.get("/login", environ_base=environ).get_data(as_text=True))
    form = {"username": username, "password": password, "csrf_token": token}
    return client.post("/login" + query, data=form, environ_base=environ)


def session_cookie(client: Any) -> str:
    """The value of the client's session cookie."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def with_cookie(app: Any, value: str) -> Any:
    """A second browser that holds a copy of someone's session cookie."""
    other = app.test_client()
    other.set_cookie("session", value)
    return other


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?next=//evil.example", 302),
        ("?next=https://evil.example/", 302),
        ("?next=/%5Cevil.example", 302),
        ("?next=/no/such/page", 302),
        ("?next=" + "/" + "a" * 3000, 302),
        ("?next=/%09/evil.example", 422),  # control characters in a query are refused outright
        ("?next=/broadcasts%0D%0ASet-Cookie:%20x=1", 422),
    ],
)
def test_next_never_leaves_the_site(seeded: Any, query: str, status: int) -> None:
    client = seeded.test_client()
    good = log_in(client, "operator", "operator-password-1", query="?next=/broadcasts")
    assert good.status_code == 302
    assert good.headers["Location"] == "/broadcasts"  # a page of this site is honoured
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").get_data(as_text=True))})
    response = log_in(client, "operator", "operator-password-1", query=query)
    assert response.status_code == status
    assert response.headers.get("Location", "/") == "/"
    assert "Set-Cookie: x" not in str(response.headers)


def test_logout_ends_a_copied_cookie(seeded: Any) -> None:
    client = seeded.test_client()
    assert log_in(client, "operator", "operator-password-1").status_code == 302
    copied = session_cookie(client)
    assert with_cookie(seeded, copied).get("/").status_code == 200  # the copy works while the session lives
    client.post("/logout", data={"csrf_token": csrf_of(client.get("/").get_data(as_text=True))})
    stale = with_cookie(seeded, copied).get("/")
    assert stale.status_code == 302
    assert "/login" in stale.headers["Location"]
    assert with_cookie(seeded, copied).get("/api/v1/regions").status_code == 401
    with seeded.extensions["platform"].db.transaction() as session:
        assert "logout" in set(session.scalars(select(AuditEvent.action)))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: user_admin.reset_password(s, None, "operator"),
        lambda s: user_admin.set_role(s, None, "operator", "operator", DALU),
        lambda s: user_admin.set_role(s, None, "operator", "viewer", None),
        lambda s: user_admin.set_active(s, None, "operator", False),
    ],
    ids=["password", "region", "role", "disabled"],
)
def test_account_changes_end_every_session(seeded: Any, change: Any) -> None:
    client = seeded.test_client()
    assert log_in(client, "operator", "operator-password-1").status_code == 302
    assert client.get("/").status_code == 200
    with seeded.extensions["platform"].db.transaction() as session:
        user_admin.set_active(session, None, "village", True)  # a no-op change ends nothing
    assert client.get("/").status_code == 200
    with seeded.extensions["platform"].db.transaction() as session:
        change(session)
    assert client.get("/").status_code == 302


def test_failures_slow_only_that_name_from_that_address(seeded: Any) -> None:
    client = seeded.test_client()
    for _ in range(5):
        wrong = log_in(client, "operator", "wrong-password", address="10.0.0.66")
        assert wrong.status_code == 200
        assert "用户名或密码错误" in wrong.get_data(as_text=True)
    locked = log_in(client, "operator", "operator-password-1", address="10.0.0.66")
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 30
    assert "登录失败次数过多" in locked.get_data(as_text=True)
    # The stranger at 10.0.0.66 locked out nobody else: the real user elsewhere, nor a colleague behind that NAT.
    assert log_in(seeded.test_client(), "operator", "operator-password-1", address="10.0.0.7").status_code == 302
    assert log_in(seeded.test_client(), "village", "village-password-1", address="10.0.0.66").status_code == 302


def test_waits_grow_and_are_capped(seeded: Any) -> None:
    platform = seeded.extensions["platform"]
    waits = []
    with platform.db.transaction() as session:
        assert accounts.throttle_wait(session, "operator", "10.0.0.9", **LIMITS) == 0
        for _failures in range(1, 12):
            session.add(LoginAttempt(username="operator", address="10.0.0.9", at=utcnow()))
            session.flush()
            waits.append(accounts.throttle_wait(session, "operator", "10.0.0.9", **LIMITS))
    assert waits[:4] == [0, 0, 0, 0]
    assert 25 <= waits[4] <= 30  # after the fifth failure: about 30 s
    assert all(later >= earlier for earlier, later in itertools.pairwise(waits))
    assert 100 <= waits[6] <= 120
    assert waits[-1] <= 900
    with platform.db.transaction() as session:  # an old failure streak is forgiven once its wait has passed
        session.execute(LoginAttempt.__table__.update().values(at=utcnow() - timedelta(seconds=901)))
        assert accounts.throttle_wait(session, "operator", "10.0.0.9", **LIMITS) == 0


def test_admin_unlock_lifts_the_wait(seeded: Any) -> None:
    platform = seeded.extensions["platform"]
    client = seeded.test_client()
    for _ in range(6):
        log_in(client, "operator", "wrong-password", address="10.0.0.5")
    assert log_in(client, "operator", "operator-password-1", address="10.0.0.5").status_code == 429
    with platform.db.transaction() as session:
        assert accounts.unlock(session, "operator", "admin") == 5  # a refused (429) try is not a failure
        assert "user.unlock" in set(session.scalars(select(AuditEvent.action)))
    assert log_in(client, "operator", "operator-password-1", address="10.0.0.5").status_code == 302


def test_unknown_names_cost_the_same_hash_as_known_ones(seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = accounts.check_password_hash

    def spy(stored: str, password: str) -> bool:  # observes the real check, changes nothing
        checked.append(stored.split("$", 1)[0])
        return real(stored, password)

    monkeypatch.setattr(accounts, "check_password_hash", spy)
    platform = seeded.extensions["platform"]
    for name in ("operator", "nobody-here", "bad name\x00"):
        with platform.db.transaction() as session, pytest.raises(accounts.BroadcastError, match="Wrong"):
            accounts.login(session, name, "wrong-password", "10.0.0.1", **LIMITS)
    assert len(checked) == 3
    assert len(set(checked)) == 1  # one method and cost for all three
    assert checked[0].startswith("scrypt")


def test_login_posts_per_address_are_rate_limited(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", LOGIN_RATE_LIMIT="3/minute")
    try:
        client = app.test_client()
        for name in ("a1", "a2", "a3"):
            assert log_in(client, name, "wrong-password", address="10.1.1.1").status_code == 200
        limited = log_in(client, "a4", "wrong-password", address="10.1.1.1")
        assert limited.status_code == 429
        assert "Retry-After" in limited.headers
        assert log_in(client, "admin", "admin-password-123", address="10.1.1.2").status_code == 302
    finally:
        app.extensions["platform"].close()
