"""A user's console language set on the user admin page, and every change of it in the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import AuditEvent, User
from tests.broadcast.conftest import seed_county
from tests.broadcast.test_console import csrf_of, log_in
from tests.broadcast.test_i18n import set_language


@pytest.fixture
def county(app: Any) -> Any:
    """The demo county with one user per role."""
    seed_county(app)
    return app


def language_of(app: Any, username: str) -> str | None:
    """What users.language holds for a user."""
    with app.extensions["platform"].db.transaction() as session:
        return session.scalars(select(User.language).where(User.username == username)).one()


def language_events(app: Any) -> list[tuple[str, str | None, dict | None]]:
    """Every user.language audit entry: who, which user (id), before and after."""
    with app.extensions["platform"].db.transaction() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.language").order_by(AuditEvent.id))
        return [(e.actor, e.object_id, e.detail) for e in events]


def user_id(app: Any, username: str) -> str:
    """A user's id as the audit log names it."""
    with app.extensions["platform"].db.transaction() as session:
        return str(session.scalars(select(User.id).where(User.username == username)).one())


def choose_for(client: Any, username: str, language: str, *, with_token: bool = True) -> Any:
    """Pick a language in the user page's select and save, as an admin does."""
    data = {"action": "language", "language": language}
    if with_token:
        data["csrf_token"] = csrf_of(client.get("/").get_data(as_text=True))
    return client.post(f"/admin/users/{username}", data=data)


def test_an_admin_sets_a_users_language_and_the_audit_log_says_so(client: Any, county: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    page = client.get("/admin/users/operator").get_data(as_text=True)
    assert 'id="language-form"' in page
    assert '<option value="" selected>默认（部署设置：中文）</option>' in page
    assert choose_for(client, "operator", "en").status_code == 200
    assert language_of(county, "operator") == "en"
    assert '<option value="en" lang="en" selected>English</option>' in client.get("/admin/users/operator").get_data(
        as_text=True
    )
    other = county.test_client()
    log_in(other, "operator", "operator-password-1")
    assert "Broadcasts" in other.get("/broadcasts").get_data(as_text=True)  # the operator's pages are English now
    choose_for(client, "operator", "en")  # no change: nothing to record
    choose_for(client, "operator", "")  # back to the deployment's default
    assert language_of(county, "operator") is None
    assert "播发记录" in other.get("/broadcasts").get_data(as_text=True)
    operator = user_id(county, "operator")
    assert language_events(county) == [
        ("admin", operator, {"before": None, "after": "en"}),
        ("admin", operator, {"before": "en", "after": None}),
    ]
    audit = client.get("/audit").get_data(as_text=True)
    assert "修改界面语言" in audit  # the audit page names the action


def test_changing_ones_own_language_is_audited(client: Any, county: Any) -> None:
    log_in(client, "viewer", "viewer-password-1")
    set_language(client, "en")
    set_language(client, "en")
    set_language(client, "zh")
    viewer = user_id(county, "viewer")
    assert language_events(county) == [
        ("viewer", viewer, {"before": None, "after": "en"}),
        ("viewer", viewer, {"before": "en", "after": "zh"}),
    ]
    admin = county.test_client()
    log_in(admin, "admin", "admin-password-123")
    set_language(admin, "en")
    assert "Change console language" in admin.get("/audit?action=user.language").get_data(as_text=True)


def test_who_may_not_change_another_users_language(client: Any, county: Any) -> None:
    log_in(client, "viewer", "viewer-password-1")
    assert choose_for(client, "operator", "en").status_code == 403  # a viewer manages nobody
    operator = county.test_client()
    log_in(operator, "operator", "operator-password-1")
    assert choose_for(operator, "admin", "en").status_code == 403  # an operator does not manage admins
    assert choose_for(operator, "village", "en").status_code == 200  # but does manage people in the region
    assert language_of(county, "village") == "en"
    assert language_of(county, "operator") is None
    assert language_of(county, "admin") is None
    assert [(who, detail) for who, _id, detail in language_events(county)] == [
        ("operator", {"before": None, "after": "en"})
    ]


def test_a_language_change_needs_the_csrf_token_and_a_known_language(client: Any, county: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    assert choose_for(client, "operator", "en", with_token=False).status_code == 400
    refused = choose_for(client, "operator", "fr")
    assert "语言无效" in refused.get_data(as_text=True)
    assert language_of(county, "operator") is None
    assert language_events(county) == []
