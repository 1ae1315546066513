"""Pin: every state-changing route a browser session can reach refuses a request without a valid CSRF token.

The routes are read from the app's URL map, so a form added later is covered without touching this file.
"""

from __future__ import annotations

from typing import Any

from flask import url_for
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Broadcast, Clip, LoginAttempt, User
from tests.broadcast.conftest import seed_county
from tests.broadcast.test_console import csrf_of, log_in

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
EXPECTED = {"console.login", "console.logout", "console.send", "api.create_clip", "api.create_broadcast"}
# Machine-to-machine endpoints that never accept a browser session (a token or an HMAC signature only), so a
# forged cross-site request carries nothing they accept. Each entry is reviewed; a new one must be added here.
MACHINE_ONLY = {
    "alerts_api.post_alert": ("application/cap+xml", b"<alert/>"),  # a warning source's token, or HMAC
    "alerts_api.post_trigger": ("application/json", b'{"value": 1}'),  # a sensor's HMAC signature
}


def unsafe_routes(app: Any) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) of every route that changes state; path arguments filled with 1."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods & UNSAFE):
                found.append((rule.endpoint, method, url_for(rule.endpoint, **dict.fromkeys(rule.arguments, 1))))
    return sorted(found)


def snapshot(app: Any) -> dict[str, int]:
    """Row counts of the tables a form could change."""
    with app.extensions["platform"].db.transaction() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (AuditEvent, Broadcast, Clip, LoginAttempt, User)
        }


def refused_for_csrf(response: Any) -> bool:
    """The one CSRF refusal: 400 with the "form expired" message (HTML page or JSON body)."""
    if response.status_code != 400:
        return False
    body = response.get_json(silent=True)
    if body is not None:
        return body.get("error", {}).get("code") == "csrf"
    return "页面已过期" in response.get_data(as_text=True)


def session_client(app: Any, endpoint: str) -> tuple[Any, str]:
    """A browser session (logged in as admin, except for the login form itself) and its valid CSRF token."""
    client = app.test_client()
    if endpoint == "console.login":
        return client, csrf_of(client.get("/login").get_data(as_text=True))
    assert log_in(client, "admin", "admin-password-123").status_code == 302
    return client, csrf_of(client.get("/").get_data(as_text=True))


def test_every_state_changing_route_refuses_a_missing_or_forged_csrf_token(app: Any) -> None:
    seed_county(app)
    routes = unsafe_routes(app)
    assert {endpoint for endpoint, _, _ in routes} >= EXPECTED, routes
    problems: dict[str, str] = {}
    stranger = session_client(app, "console.login")[1]  # a valid token of another session
    for endpoint, method, url in routes:
        client, token = session_client(app, endpoint)
        if endpoint in MACHINE_ONLY:
            content_type, body = MACHINE_ONLY[endpoint]
            before = snapshot(app)
            response = client.open(url, method=method, data=body, content_type=content_type)
            if response.status_code not in (401, 403, 404) or snapshot(app) != before:
                problems[f"{endpoint} (session only)"] = f"{response.status_code}: a session was enough"
            continue
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for label, data, headers in (
            ("missing", {}, {}),
            ("forged", {"csrf_token": forged}, {"X-CSRFToken": forged}),
            ("another session's", {"csrf_token": stranger}, {}),
        ):
            before = snapshot(app)
            response = client.open(url, method=method, data=data, headers=headers)
            if not refused_for_csrf(response):
                problems[f"{endpoint} ({label})"] = f"{response.status_code}: {response.get_data(as_text=True)[:120]}"
            elif snapshot(app) != before:
                problems[f"{endpoint} ({label})"] = "refused but changed rows"
        # And the same session with its valid token gets past the check: the refusals above were for the token.
        ok = client.open(url, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token})
        if refused_for_csrf(ok):
            problems[endpoint] = f"refused even with a valid token: {ok.status_code}"
    assert problems == {}


def test_a_refused_form_says_why_in_chinese_and_english(app: Any) -> None:
    seed_county(app)
    client, _token = session_client(app, "console.send")
    zh = client.post("/send", data={"text": "测试", "targets": "421224104000"})
    assert zh.status_code == 400
    assert "页面已过期" in zh.get_data(as_text=True)
    en = client.post("/api/v1/clips", json={"text": "test"}, headers={"Accept-Language": "en"})
    assert en.get_json()["error"] == {
        "code": "csrf",
        "message": "The form expired (CSRF check failed); reload and retry.",
    }
