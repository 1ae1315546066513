"""Schedule summaries in the reader's language (console pages, API), and the emergency phrase in English."""

from __future__ import annotations

from html import unescape
from pathlib import Path
from typing import Any

from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.broadcast.test_console import csrf_of, log_in
from tests.broadcast.test_i18n import set_language
from tests.broadcast.test_schedules_api import body, clip_id, tomorrow
from tests.conftest import free_port, make_app

LAST_WORKDAY = "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"  # an expert rule the console form cannot make


def page(client: Any, path: str, **form: Any) -> str:
    """A console page's HTML, entities resolved (GET, or POST of a form with the page's CSRF token)."""
    if not form:
        return unescape(client.get(path).get_data(as_text=True))
    form["csrf_token"] = csrf_of(client.get("/").get_data(as_text=True))
    return unescape(client.post(path, data=form).get_data(as_text=True))


def expert_schedule(client: Any, token: str) -> int:
    """A schedule on the last workday of each month at 17:00, saved through the API."""
    made = client.post("/api/v1/schedules", json=body(clip_id(client, token), rrule=LAST_WORKDAY), headers=auth(token))
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.get_json()["id"]


def test_console_pages_word_the_rule_in_the_users_language(client: Any, tokens: dict[str, str]) -> None:
    sid = expert_schedule(client, tokens["admin"])
    log_in(client, "admin", "admin-password-123")
    form = {"action": "preview", "content": "", "targets": [HUANGSHA], "kind": "weekly", "days": ["0", "4"]}
    form |= {"date": tomorrow()[:10], "time": "07:30", "end": "count", "count": "4", "title": "News"}
    form["content"] = f"clip:{clip_id(client, tokens['admin'])}"
    chinese = {
        f"/schedules/{sid}": "每月最后一个工作日 07:30",
        "/schedules": "每月最后一个工作日 07:30",
        f"/schedules/{sid}/edit": "保持现有规则（每月最后一个工作日 07:30）",
    }
    english = {
        f"/schedules/{sid}": "Every month on the last workday at 07:30",
        "/schedules": "Every month on the last workday at 07:30",
        f"/schedules/{sid}/edit": "Every month on the last workday at 07:30",
    }
    for path, words in chinese.items():
        assert words in page(client, path), path
    assert "每周一、五 07:30，共 4 次" in page(client, "/schedules/new", **form)  # the form's preview
    set_language(client, "en")
    for path, words in english.items():
        html = page(client, path)
        assert words in html, path
        assert "每月" not in html, path
    assert "Every Monday and Friday at 07:30, 4 plays in all" in page(client, "/schedules/new", **form)
    edited = page(client, f"/schedules/{sid}/edit", **(form | {"kind": "keep", "count": "2"}))
    assert "Every month on the last workday at 07:30, 2 plays in all" in edited  # the kept rule's preview


def test_the_api_summary_follows_the_clients_language(client: Any, tokens: dict[str, str]) -> None:
    sid = expert_schedule(client, tokens["operator"])
    url = f"/api/v1/schedules/{sid}"
    bearer = {"Authorization": f"Bearer {tokens['operator']}"}
    zh, en = "每月最后一个工作日 07:30", "Every month on the last workday at 07:30"
    assert client.get(url, headers=bearer).get_json()["summary"] == zh  # the deployment's default: Chinese
    assert client.get(url, headers=auth(tokens["operator"])).get_json()["summary"] == zh
    assert client.get(url, headers=auth(tokens["operator"], "en-GB,en;q=0.9")).get_json()["summary"] == en
    assert client.get(url + "?lang=en", headers=auth(tokens["operator"])).get_json()["summary"] == en
    assert client.get(url, headers=bearer | {"X-Language": "en"}).get_json()["summary"] == en
    listed = client.get("/api/v1/schedules?lang=en", headers=bearer).get_json()["items"]
    assert [s["summary"] for s in listed] == [en]
    preview = client.post(
        "/api/v1/schedules/preview",
        json=body(clip_id(client, tokens["operator"]), count=3),
        headers=bearer | {"X-Language": "en"},
    )
    assert preview.get_json()["summary"] == "Every Monday, Wednesday and Friday at 07:30, 3 plays in all"
    paused = client.patch(url + "?lang=en", json={"paused": True}, headers=bearer)
    assert paused.get_json()["summary"] == en  # a paused schedule is worded too


def test_an_english_deployment_answers_english_summaries(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path / "instance", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", LANGUAGE="en")
    try:
        client = app.test_client()
        tokens = seed_county(app)
        made = client.post(
            "/api/v1/schedules",
            json=body(clip_id(client, tokens["admin"]), rrule="FREQ=DAILY"),
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        )
        assert made.get_json()["summary"] == "Every day at 07:30"
    finally:
        app.extensions["platform"].close()


def test_an_english_user_confirms_an_emergency_in_english(client: Any, tokens: dict[str, str]) -> None:
    log_in(client, "operator", "operator-password-1")
    set_language(client, "en")
    assert "Type “confirm broadcast” to confirm" in page(client, "/alerts")
    form = {"text": "Flood warning", "targets": [HUANGSHA]}
    refused = page(client, "/alerts/manual", **(form | {"confirm": "confirm"}))
    assert "Type “confirm broadcast” (or “确认播发”) to confirm the emergency broadcast." in refused
    token = csrf_of(client.get("/").get_data(as_text=True))
    sent = client.post("/alerts/manual", data=form | {"confirm": "confirm broadcast", "csrf_token": token})
    assert sent.status_code == 302, sent.get_data(as_text=True)
    set_language(client, "zh")
    assert "请输入“确认播发”确认" in page(client, "/alerts")
    token = csrf_of(client.get("/").get_data(as_text=True))
    again = client.post("/alerts/manual", data=form | {"confirm": "确认播发", "csrf_token": token})
    assert again.status_code == 302, again.get_data(as_text=True)
