"""Console pages through the Flask test client: login, lockout, CSRF, scoping and the send form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Broadcast, LoginAttempt
from tests.broadcast.conftest import seed_county


@pytest.fixture
def seeded(app: Any) -> Any:
    """The demo county with users of every role."""
    seed_county(app)
    return app


def csrf_of(html: str) -> str:
    """The CSRF token a page carries."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def log_in(client: Any, username: str, password: str) -> Any:
    """Log in through the form, as a browser does."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_anonymous_visitors_go_to_login(client: Any, seeded: Any) -> None:
    for path in ("/", "/broadcasts", "/speakers", "/broadcasts/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_login_logout_and_security_headers(client: Any, seeded: Any) -> None:
    response = log_in(client, "operator", "operator-password-1")
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "发布广播" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    client.post("/logout", data={"csrf_token": csrf_of(html)})
    assert client.get("/").status_code == 302


def test_wrong_passwords_lock_the_login(client: Any, seeded: Any) -> None:
    for _ in range(5):
        html = log_in(client, "operator", "wrong").get_data(as_text=True)
        assert "用户名或密码错误" in html
    locked = log_in(client, "operator", "operator-password-1").get_data(as_text=True)
    assert "登录失败次数过多" in locked
    assert client.get("/").status_code == 302  # still not logged in, even with the right password
    with seeded.extensions["platform"].db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 5
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("login%"))))
        assert actions.count("login.failed") == 5
        assert "login.locked" in actions


def test_forms_without_csrf_token_change_nothing(client: Any, seeded: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    response = client.post("/send", data={"text": "测试", "targets": "421224104000"})
    assert response.status_code == 400
    assert "页面已过期" in response.get_data(as_text=True)
    api = client.post("/api/v1/clips", json={"text": "测试"})  # the console's session on the API needs it too
    assert api.status_code == 400
    assert api.get_json()["error"]["code"] == "csrf"
    with seeded.extensions["platform"].db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 0


def test_village_head_sees_only_their_village(client: Any, seeded: Any) -> None:
    log_in(client, "village", "village-password-1")
    html = client.get("/").get_data(as_text=True)
    codes = set(re.findall(r'name="targets" value="(\d+)"', html))
    assert "421224104201" in codes  # their village
    assert {"42122410420101", "42122410420102"} <= codes  # and its grids
    assert "421224205000" not in codes
    assert "421224104202" not in codes
    speakers = client.get("/speakers").get_data(as_text=True)
    assert speakers.count('data-speaker="spk-') >= 4
    assert "spk-42122420520101-1" not in speakers


def test_send_form_creates_a_broadcast(client: Any, seeded: Any) -> None:
    log_in(client, "operator", "operator-password-1")
    token = csrf_of(client.get("/").get_data(as_text=True))
    response = client.post(
        "/send",
        data={"csrf_token": token, "text": "各位村民请注意。", "targets": ["421224104201"], "priority": "urgent"},
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert page.count('class="state"') == 4
    assert "紧急通知" in page
    bad = client.post("/send", data={"csrf_token": token, "text": "各位村民请注意。", "targets": ["421224205000"]})
    assert bad.status_code == 403
    assert "无权" in bad.get_data(as_text=True)
