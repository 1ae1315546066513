"""Console languages: a complete English catalogue, Chinese by default, and one rule (the user's own setting)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

import broadcast
from broadcast.models import Alert, Clip, Region, Speaker, User
from tests.broadcast.conftest import HUANGSHA, HUANGSHA_VILLAGE, seed_county
from tests.broadcast.test_console import csrf_of, log_in
from tests.conftest import free_port, make_app

ROOT = Path(broadcast.__file__).resolve().parent.parent
CATALOGUE = ROOT / "broadcast" / "translations" / "en" / "LC_MESSAGES"
CJK = re.compile(r"[\u4e00-\u9fff]")
PLACEHOLDER = re.compile(r"%\(\w+\)s")
# Chinese an English page still shows on purpose: each language's button (and the user page's language
# select) names it in itself.
MEANT_CHINESE = ("中文",)


class _Text(HTMLParser):
    """The text a person reads on a page: text nodes, titles and placeholders (scripts and styles are code)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label", "data-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """Everything on the page a reader sees, one piece a line."""
    parser = _Text()
    parser.feed(html)
    return "\n".join(p.strip() for p in parser.parts if p.strip())


def chinese_left(html: str, data: tuple[str, ...] = ()) -> list[str]:
    """Lines of visible text (and of the scripts' UI texts) that still hold Chinese characters beyond DATA."""
    text = visible_text(html)
    for meant in (*MEANT_CHINESE, *sorted(data, key=len, reverse=True)):
        text = text.replace(meant, "")
    texts = re.search(r'<script type="application/json" id="ui-texts">(.*?)</script>', html, re.S)
    lines = text.splitlines() + ([texts.group(1)] if texts else [])
    return [line for line in lines if CJK.search(line)]


def extracted() -> set[tuple[str | None, str]]:
    """Every (context, message) pybabel extracts from the sources with babel.cfg's rules."""
    methods = [
        ("broadcast/console/**.py", "python"),
        ("broadcast/i18n.py", "python"),
        ("broadcast/console/templates/**.html", "jinja2"),
    ]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "pgettext": ((1, "c"), 2)}
    found = set()
    for _file, _line, message, _comments, context in extract_from_dir(str(ROOT), methods, keywords=keywords):
        found.add((context, message))
    return found


def test_babel_cfg_is_what_the_test_extracts_with() -> None:
    config = (ROOT / "babel.cfg").read_text(encoding="utf-8")
    for rule in (
        "[python: broadcast/console/**.py]",
        "[python: broadcast/i18n.py]",
        "[jinja2: broadcast/console/templates/**.html]",
    ):
        assert rule in config


def test_the_english_catalogue_translates_every_message() -> None:
    with (CATALOGUE / "messages.po").open("rb") as handle:
        catalogue = read_po(handle, locale="en")
    messages = extracted()
    assert len(messages) > 300  # the extraction really ran over the console
    missing = []
    for context, message in sorted(messages, key=str):
        entry = catalogue.get(message, context=context)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append((context, message))
            continue
        assert not CJK.search(entry.string), (message, entry.string)
        assert sorted(PLACEHOLDER.findall(entry.string)) == sorted(PLACEHOLDER.findall(message)), message
    assert missing == []


def test_the_compiled_catalogue_matches_the_po_file() -> None:
    with (CATALOGUE / "messages.po").open("rb") as handle:
        source = {(m.context, m.id): m.string for m in read_po(handle, locale="en") if m.id}
    with (CATALOGUE / "messages.mo").open("rb") as handle:
        compiled = {(_text(m.context), m.id): m.string for m in read_mo(handle) if m.id}
    assert compiled == source  # run `pybabel compile -d broadcast/translations` after editing the .po


def _text(value: str | bytes | None) -> str | None:
    """Babel's read_mo gives a message context as bytes."""
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def county(app: Any) -> Any:
    """The demo county with ASCII names (so any Chinese left on a page is the console's own)."""
    seed_county(app)
    with app.extensions["platform"].db.transaction() as session:
        for region in session.scalars(select(Region)):
            region.name = f"Area-{region.code[-6:]}"
        for speaker in session.scalars(select(Speaker)):
            speaker.name = f"Post {speaker.id[-8:]}"
    return app


def set_language(client: Any, language: str) -> Any:
    """Choose the console's language on the header's control, as a person does."""
    token = csrf_of(client.get("/").get_data(as_text=True))
    return client.post("/language", data={"language": language, "csrf_token": token, "next": "/broadcasts"})


def make_things(client: Any, app: Any) -> dict[str, int]:
    """A broadcast, a schedule, an emergency alert and a request waiting for approval, made through the forms."""
    token = csrf_of(client.get("/").get_data(as_text=True))
    sent = client.post(
        "/send", data={"csrf_token": token, "text": "Test notice", "title": "Test notice", "targets": [HUANGSHA]}
    )
    assert sent.status_code == 302, sent.get_data(as_text=True)
    broadcast_id = int(sent.headers["Location"].rsplit("/", 1)[1])
    clip_id = (
        app.extensions["platform"]
        .db.session()
        .execute(select(broadcast.models.Broadcast.clip_id).where(broadcast.models.Broadcast.id == broadcast_id))
        .scalar_one()
    )
    schedule = client.post(
        "/schedules/new",
        data={
            "csrf_token": token, "action": "save", "title": "Morning news", "content": f"clip:{clip_id}",
            "targets": [HUANGSHA], "kind": "daily", "date": "2030-01-01", "time": "07:30", "priority": "normal",
        },
    )  # fmt: skip
    assert schedule.status_code == 302, schedule.get_data(as_text=True)
    alert = client.post(
        "/alerts/manual",
        data={"csrf_token": token, "text": "Flood warning", "targets": [HUANGSHA], "confirm": "confirm broadcast"},
    )
    assert alert.status_code == 302, alert.get_data(as_text=True)
    return {
        "broadcast": broadcast_id,
        "schedule": int(schedule.headers["Location"].rsplit("/", 1)[1]),
        "alert": int(alert.headers["Location"].rstrip("/").rsplit("/", 1)[1]),
    }


def request_approval(app: Any) -> None:
    """The village head's broadcast, which waits for an operator's approval."""
    village = app.test_client()
    log_in(village, "village", "village-password-1")
    token = csrf_of(village.get("/").get_data(as_text=True))
    village.post("/send", data={"csrf_token": token, "text": "Village meeting", "targets": [HUANGSHA_VILLAGE]})


def pages(made: dict[str, int]) -> list[str]:
    """Every main console page."""
    return [
        "/",
        "/broadcasts",
        f"/broadcasts/{made['broadcast']}",
        "/speakers",
        "/schedules",
        "/schedules/new",
        f"/schedules/{made['schedule']}",
        f"/schedules/{made['schedule']}/edit",
        "/alerts",
        f"/alerts/{made['alert']}",
        "/approvals",
        "/audit",
        "/admin/regions",
        f"/admin/regions?code={HUANGSHA}",
        "/admin/speakers",
        "/admin/import",
        "/admin/users",
        "/admin/users/operator",
        "/admin/map",
        "/account/password",
        "/no-such-page",
    ]


def stored_words(app: Any) -> tuple[str, ...]:
    """Chinese the services store, shown as it is in every language.

    The titles of the clips the alert service makes and a manual alert's event name: records, like a title
    a user types (docs/i18n.md). A schedule's rule summary is not among them: it is worded in English.
    """
    session = app.extensions["platform"].db.session()
    try:
        words = [c.title or "" for c in session.scalars(select(Clip))]
        words += [a.event or "" for a in session.scalars(select(Alert))]
    finally:
        session.close()
    return tuple(w for w in words if w)


def first_speaker(app: Any) -> str:
    """One speaker's id."""
    session = app.extensions["platform"].db.session()
    try:
        return session.scalars(select(Speaker.id).order_by(Speaker.id)).first() or ""
    finally:
        session.close()


def test_an_english_user_sees_no_chinese_on_any_page(client: Any, county: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    assert set_language(client, "en").status_code == 302
    made = make_things(client, county)
    request_approval(county)
    data = stored_words(county)
    left = {}
    for path in [*pages(made), f"/admin/speakers/{first_speaker(county)}"]:
        response = client.get(path)
        assert response.status_code in (200, 404), path
        html = response.get_data(as_text=True)
        assert '<html lang="en">' in html, path
        assert "%(" not in visible_text(html), path  # every placeholder was filled
        if chinese_left(html, data):
            left[path] = chinese_left(html, data)
    assert not left, "\n".join(f"{path}: {lines}" for path, lines in left.items())


def test_english_form_errors_and_error_pages(client: Any, county: Any) -> None:
    log_in(client, "operator", "operator-password-1")
    set_language(client, "en")
    token = csrf_of(client.get("/").get_data(as_text=True))
    refused = client.post("/send", data={"csrf_token": token, "text": "Keep this text", "targets": []})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Choose at least one region or speaker." in html
    assert "Keep this text" in html  # the typed text stays
    missing = client.get("/broadcasts/999999", headers={"Accept-Language": "zh-CN"})
    assert missing.status_code == 404
    assert "Something went wrong" in missing.get_data(as_text=True)  # the user's language, not the browser's


def test_chinese_is_the_default(client: Any, county: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    made = make_things(client, county)
    for path in pages(made):
        html = client.get(path, headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
        assert '<html lang="zh-CN">' in html, path
        title = re.search(r"<title>(.*?)</title>", html, re.S)
        assert title, path
        assert CJK.search(title.group(1)), path
        for english in ("Broadcasts", "Speakers", "Log out", "Something went wrong", "Approvals"):
            assert english not in visible_text(html), (path, english)
    login = county.test_client().get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "登录" in login
    assert "Log in" not in login


def test_the_language_is_each_users_own(client: Any, county: Any) -> None:
    log_in(client, "operator", "operator-password-1")
    assert client.post("/language", data={"language": "en"}).status_code == 400  # no CSRF token: refused
    assert "播发记录" in client.get("/broadcasts").get_data(as_text=True)
    response = set_language(client, "en")
    assert response.headers["Location"].endswith("/broadcasts")
    assert "Broadcasts" in client.get("/broadcasts").get_data(as_text=True)
    other = county.test_client()
    log_in(other, "viewer", "viewer-password-1")
    assert "播发记录" in other.get("/broadcasts").get_data(as_text=True)  # another user keeps the default
    with county.extensions["platform"].db.transaction() as session:
        languages = dict(session.execute(select(User.username, User.language)).tuples().all())
    assert languages["operator"] == "en"
    assert languages["viewer"] is None
    set_language(client, "")  # no choice: back to the deployment's default
    assert "播发记录" in client.get("/broadcasts").get_data(as_text=True)


def test_the_api_keeps_asking_the_client(client: Any, county: Any) -> None:
    log_in(client, "operator", "operator-password-1")
    set_language(client, "en")
    answer = client.get("/api/v1/broadcasts/999999", headers={"Accept": "application/json", "X-Language": "zh"})
    assert answer.status_code == 404
    assert CJK.search(answer.get_json()["error"]["message"])


def test_a_deployment_can_default_to_english(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path / "instance", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", LANGUAGE="en")
    try:
        page = app.test_client().get("/login").get_data(as_text=True)
        assert '<html lang="en">' in page
        assert "Username" in page
        assert not chinese_left(page)
    finally:
        app.extensions["platform"].close()
