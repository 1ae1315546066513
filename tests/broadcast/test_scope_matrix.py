"""Role × endpoint × region, through the API (tokens) and the console (sessions), clips and media included.

Every route of the app is covered: anonymous visitors reach only the public ones, a viewer changes nothing
anywhere, and the routes of this matrix answer each role by region exactly as documented.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import url_for
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Broadcast, Clip, User
from broadcast.services import accounts
from broadcast.web.security import SELF_SERVICE
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, auth, seed_county
from tests.broadcast.test_console import csrf_of

ROLES = ("admin", "operator", "village", "viewer", "county_viewer", "dalu")
AUTHORS = ("admin", "operator", "village", "dalu")
# Whose clips each role may use (GET /clips/<id>, broadcast them, fetch their audio): the same rule everywhere.
SEES = {
    "admin": {"admin", "operator", "village", "dalu"},
    "operator": {"admin", "operator", "village"},
    "village": {"admin", "village"},
    "viewer": {"admin", "operator", "village"},
    "county_viewer": {"admin"},
    "dalu": {"admin", "dalu"},
}
PUBLIC = {"api.server_time", "api.openapi_document", "console.login", "static", "console.static"}
PUBLIC_PREFIXES = ("health.",)
# Machine inputs with their own authentication (HMAC signature or a warning_source token), checked in their own tests.
OWN_AUTH = {"alerts_api.post_alert", "alerts_api.post_trigger"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _add_users(app: Any) -> dict[str, str]:
    tokens = seed_county(app)
    named = {"admin": tokens["admin"], "operator": tokens["operator"], "village": tokens["village_head"]}
    named["viewer"] = tokens["viewer"]
    with app.extensions["platform"].db.transaction() as session:
        for name, role, region in (("county_viewer", "viewer", None), ("dalu", "operator", DALU)):
            user = accounts.create_user(session, name, f"{name}-password-1", role, region)
            named[name] = accounts.create_token(session, user)
    return named


@pytest.fixture
def world(app: Any) -> dict[str, Any]:
    """Users of every role and region, and one clip made by each author."""
    tokens = _add_users(app)
    client = app.test_client()
    made = {}
    for author in AUTHORS:
        response = client.post("/api/v1/clips", json={"text": f"{author}的通知。"}, headers=auth(tokens[author]))
        assert response.status_code == 201, response.get_data(as_text=True)
        made[author] = response.get_json()
    return {"tokens": tokens, "clips": made}


def console_client(app: Any, name: str) -> Any:
    """A browser logged in as `name`."""
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"username": name, "password": "admin-password-123" if name == "admin" else f"{name}-password-1"}
    assert client.post("/login", data={**form, "csrf_token": token}).status_code == 302
    return client


def test_clip_and_media_visibility_follow_one_rule(app: Any, world: dict[str, Any]) -> None:
    tokens, made = world["tokens"], world["clips"]
    for role in ROLES:
        browser = console_client(app, role)
        for author in AUTHORS:
            clip = made[author]
            expected = 200 if author in SEES[role] else 404
            via_token = app.test_client()
            assert via_token.get(f"/api/v1/clips/{clip['id']}", headers=auth(tokens[role])).status_code == expected
            audio = via_token.get(clip["url"], headers=auth(tokens[role]))
            assert audio.status_code == expected, (role, author, "token media")
            audio.close()
            page_audio = browser.get(clip["url"])
            assert page_audio.status_code == expected, (role, author, "session media")
            page_audio.close()
    assert app.test_client().get(made["admin"]["url"]).status_code == 403  # anonymous: no audio at all


@pytest.mark.parametrize(
    ("role", "target", "status"),
    [
        ("admin", DALU, 201),
        ("admin", HUANGSHA, 201),
        ("operator", HUANGSHA, 201),
        ("operator", DALU, 403),
        ("village", HUANGSHA_VILLAGE, 201),
        ("village", HUANGSHA, 403),
        ("dalu", DALU, 201),
        ("dalu", HUANGSHA_VILLAGE, 403),
        ("viewer", HUANGSHA, 403),
        ("county_viewer", HUANGSHA, 403),
    ],
)
def test_broadcast_by_role_and_region(app: Any, world: dict[str, Any], role: str, target: str, status: int) -> None:
    body = {"clip_id": world["clips"]["admin"]["id"], "targets": [target]}
    response = app.test_client().post("/api/v1/broadcasts", json=body, headers=auth(world["tokens"][role]))
    assert response.status_code == status, response.get_data(as_text=True)


def test_viewers_make_nothing(app: Any, world: dict[str, Any]) -> None:
    client = app.test_client()
    again = client.post("/api/v1/clips", json={"text": "admin的通知。"}, headers=auth(world["tokens"]["operator"]))
    assert again.status_code == 201  # an operator may (the same words give the same clip)
    before = _counts(app)
    for viewer in ("viewer", "county_viewer"):
        refused = client.post("/api/v1/clips", json={"text": "只读用户的通知。"}, headers=auth(world["tokens"][viewer]))
        assert refused.status_code == 403
        browser = console_client(app, viewer)
        form = {
            "text": "只读用户的通知。",
            "targets": [HUANGSHA],
            "csrf_token": csrf_of(browser.get("/").get_data(True)),
        }
        assert browser.post("/send", data=form).status_code == 403
    assert _counts(app)[:2] == before[:2]


def test_reads_by_role_and_region(app: Any, world: dict[str, Any]) -> None:
    tokens = world["tokens"]
    client = app.test_client()
    body = {"clip_id": world["clips"]["admin"]["id"], "targets": [HUANGSHA_VILLAGE]}
    made = client.post("/api/v1/broadcasts", json=body, headers=auth(tokens["admin"])).get_json()["id"]
    speakers = {"admin": 24, "operator": 12, "viewer": 12, "county_viewer": 24, "dalu": 12}
    for role in ROLES:
        seen = client.get(f"/api/v1/broadcasts/{made}", headers=auth(tokens[role])).status_code
        assert seen == (404 if role == "dalu" else 200), role
        items = client.get("/api/v1/speakers", headers=auth(tokens[role])).get_json()["items"]
        if role in speakers:
            assert len(items) == speakers[role], role
        else:
            assert 0 < len(items) < 12
            assert all(s["region_code"].startswith(HUANGSHA_VILLAGE) for s in items)
        assert client.get("/api/v1/regions", headers=auth(tokens[role])).status_code == 200
        assert client.get("/api/v1/alarms", headers=auth(tokens[role])).status_code == 200
        page = console_client(app, role).get(f"/broadcasts/{made}")
        assert page.status_code == (404 if role == "dalu" else 200), role


def _counts(app: Any) -> tuple[int, ...]:
    with app.extensions["platform"].db.transaction() as session:
        models = (Clip, Broadcast, User, AuditEvent)
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0 for model in models)


def every_route(app: Any) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every route of the app, path arguments filled with 1."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                args = dict.fromkeys(rule.arguments, "1")
                found.append((rule.endpoint, method, url_for(rule.endpoint, **args)))
    return sorted(found)


def test_anonymous_visitors_reach_only_public_routes(app: Any, world: dict[str, Any]) -> None:
    assert app.test_client().get("/api/v1/time").status_code == 200
    problems = {}
    for endpoint, method, url in every_route(app):
        if endpoint in PUBLIC or endpoint in OWN_AUTH or endpoint.startswith(PUBLIC_PREFIXES):
            continue
        response = app.test_client().open(url, method=method)
        response.close()
        if url.startswith("/api/"):
            ok = response.status_code in (400, 401)  # 400: a form's CSRF check may speak first
        elif url.startswith("/media/"):
            ok = response.status_code in (403, 404)
        else:
            ok = response.status_code in (302, 400) and (response.status_code == 400 or "/login" in response.location)
        if not ok:
            problems[f"{method} {url}"] = response.status_code
    assert problems == {}


def test_a_viewer_changes_nothing_anywhere(app: Any, world: dict[str, Any]) -> None:
    tokens = world["tokens"]
    client = app.test_client()
    before = _counts(app)
    problems = {}
    for endpoint, method, url in every_route(app):
        if method not in UNSAFE or not url.startswith("/api/") or endpoint in SELF_SERVICE | OWN_AUTH:
            continue
        for viewer in ("viewer", "county_viewer"):
            response = client.open(url, method=method, json={}, headers=auth(tokens[viewer]))
            if response.status_code != 403:
                problems[f"{viewer} {method} {url}"] = response.status_code
    assert problems == {}
    assert _counts(app)[:3] == before[:3]
    operator = client.post("/api/v1/broadcasts", json={}, headers=auth(tokens["operator"]))
    assert operator.status_code == 422  # the same empty body from a writer gets past the role check
