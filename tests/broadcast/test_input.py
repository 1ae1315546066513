"""Hostile input gets a clear error and changes nothing (no 500, on SQLite and PostgreSQL); the API is rate
limited per token; an API read does not write to the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from broadcast.models import AuditEvent, Broadcast, Clip
from broadcast.services import clips
from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.conftest import free_port, make_app


def count(app: Any, model: Any) -> int:
    """Rows of a table."""
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def error_of(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, with the expected status (and code)."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()["error"]
    assert set(body) <= {"code", "message", "details"}
    if code is not None:
        assert body["code"] == code
    return body


def post_raw(client: Any, path: str, raw: str, token: str) -> Any:
    """POST a raw JSON text (what json.dumps would never write)."""
    headers = {**auth(token), "Content-Type": "application/json"}
    return client.post(path, data=raw.encode(), headers=headers)


@pytest.fixture
def clip_id(client: Any, tokens: dict[str, str]) -> int:
    """A real clip made by the admin."""
    made = client.post("/api/v1/clips", json={"text": "请注意防火。"}, headers=auth(tokens["admin"]))
    assert made.status_code == 201
    return made.get_json()["id"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ('{"clip_id": %d, "targets": ["%s"], "start_at": NaN}', 400, "invalid_json"),
        ('{"clip_id": %d, "targets": ["%s"], "start_at": Infinity}', 400, "invalid_json"),
        ('{"clip_id": %d, "targets": ["%s"], "start_at": 1e400}', 400, "invalid_json"),
        ('{"clip_id": %d, "targets": ["%s"], "start_at": 1e300}', 422, "invalid_start"),
        ('{"clip_id": %d, "targets": ["%s"], "volume": 1e300}', 422, "invalid_volume"),
        ('{"clip_id": %d, "targets": ["%s"], "repeat": 99999999999999999999999}', 422, "number_out_of_range"),
        ('{"clip_id": %d, "targets": ["%s"], "start_at": "0001-01-01T00:00+14:00"}', 422, "invalid_start"),
        ('{"clip_id": %d, "targets": ["%s"], "priority": "normal\\u0000"}', 422, "invalid_characters"),
        ('{"clip_id": %d, "targets": ["%s\\u0000"]}', 422, "invalid_characters"),
        ('{"clip_id": %d, "targets": ["%s"], "x": "%s"}', 422, "invalid_characters"),
    ],
)
def test_bad_numbers_and_characters_in_a_broadcast(
    client: Any, tokens: dict[str, str], clip_id: int, raw: str, status: int, code: str
) -> None:
    plain = json.dumps({"clip_id": clip_id, "targets": [HUANGSHA]})
    good = post_raw(client, "/api/v1/broadcasts", plain, tokens["admin"])
    assert good.status_code == 201  # the same body without the bad part is accepted
    before = count(client.application, Broadcast), count(client.application, AuditEvent)
    values = (clip_id, HUANGSHA, "\\u001b[31m") if raw.count("%s") == 2 else (clip_id, HUANGSHA)
    error_of(post_raw(client, "/api/v1/broadcasts", raw % values, tokens["admin"]), status, code)
    assert (count(client.application, Broadcast), count(client.application, AuditEvent)) == before


@pytest.mark.parametrize(
    ("clip", "status"),
    [(10**30, 422), (2**40, 404), (2**31, 404), (0, 404), (-1, 404), ("99999999999999999999", 404), ("1e5", 404)],
)
def test_ids_out_of_range_are_unknown(client: Any, tokens: dict[str, str], clip: Any, status: int) -> None:
    body = {"clip_id": clip, "targets": [HUANGSHA]}
    code = "not_found" if status == 404 else "number_out_of_range"  # beyond 2**53 no JSON reader is exact
    error_of(client.post("/api/v1/broadcasts", json=body, headers=auth(tokens["admin"])), status, code)
    for path in (f"/api/v1/clips/{clip}", f"/api/v1/broadcasts/{clip}"):
        error_of(client.get(path, headers=auth(tokens["admin"])), 404)
    error_of(client.delete("/api/v1/tokens/99999999999999999999", headers=auth(tokens["admin"])), 404)
    for path in ("/api/v1/alerts/2147483648", "/api/v1/schedules/99999999999999999999"):  # whoever owns the route
        error_of(client.get(path, headers=auth(tokens["admin"])), 404)


@pytest.mark.parametrize("query", ["page=99999999999999999999", "page=-1", "per_page=5000", "page=abc", "page=１"])
def test_declared_query_arguments_are_checked(client: Any, tokens: dict[str, str], query: str) -> None:
    assert client.get("/api/v1/speakers?page=2&per_page=5", headers=auth(tokens["admin"])).status_code == 200
    body = error_of(client.get(f"/api/v1/speakers?{query}", headers=auth(tokens["admin"])), 422, "invalid_argument")
    assert body["details"]["field"] == query.split("=")[0]


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deep_json_is_refused(client: Any, tokens: dict[str, str], depth: int) -> None:
    assert post_raw(client, "/api/v1/clips", '{"text": "请注意", "wrap": {}}', tokens["admin"]).status_code == 201
    raw = '{"text": "请注意", "wrap": ' + "[" * depth + "]" * depth + "}"
    error_of(post_raw(client, "/api/v1/clips", raw, tokens["admin"]), 400, "invalid_json")


def test_oversized_json_is_refused(client: Any, tokens: dict[str, str]) -> None:
    raw = json.dumps({"text": "好", "title": "t", "pad": "x" * (1024 * 1024 + 1)})
    error_of(post_raw(client, "/api/v1/clips", raw, tokens["admin"]), 413, "too_large")


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/api/v1/speakers?region=%00", "region"),
        ("/api/v1/speakers?state=%1b[31m", "state"),
        ("/api/v1/speakers/spk%00", "path"),
        ("/api/v1/clips/1%00", "path"),
    ],
)
def test_control_characters_in_urls_are_refused(client: Any, tokens: dict[str, str], path: str, where: str) -> None:
    assert client.get("/api/v1/speakers?region=" + HUANGSHA, headers=auth(tokens["admin"])).status_code == 200
    body = error_of(client.get(path, headers=auth(tokens["admin"])), 422, "invalid_characters")
    assert body["details"]["field"] == where


def test_control_characters_in_a_notice_are_refused_by_the_api(client: Any, tokens: dict[str, str]) -> None:
    before = count(client.application, Clip)
    body = error_of(
        client.post("/api/v1/clips", json={"text": "\x1b[31m请注意"}, headers=auth(tokens["admin"], "en")),
        422,
        "invalid_characters",
    )
    assert body["details"]["field"] == "text"
    assert "control characters" in body["message"]
    assert count(client.application, Clip) == before


def test_control_characters_reaching_the_speech_are_removed_with_a_warning(app: Any) -> None:
    platform = app.extensions["platform"]
    with platform.db.transaction() as session:  # as an alert or the CLI would: no web layer in between
        plain = clips.from_text(session, platform.media_store, platform.media, "红色预警请注意", user=None)
        assert clips.CONTROL_REMOVED not in (plain.warnings or [])
        clip = clips.from_text(session, platform.media_store, platform.media, "\x1b[31m红色预警\x00请注意", user=None)
        assert clip.id == plain.id  # the same words: the same clip
        dirty = clips.from_text(session, platform.media_store, platform.media, "\x1b[31m注意\x07安全", user=None)
        assert clips.CONTROL_REMOVED in dirty.warnings
        assert "三十一" not in (dirty.spoken_text or "")
        assert dirty.text == "注意安全"


def test_nul_in_form_fields_is_refused(client: Any, tokens: dict[str, str]) -> None:
    data = {"title": "a\x00b"}
    body = error_of(client.post("/api/v1/clips", data=data, headers=auth(tokens["admin"])), 422)
    assert body["code"] == "invalid_characters"


@pytest.fixture
def limited_app(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """An app whose API allows three writes and five reads a minute per token."""
    app = make_app(
        tmp_path / "i",
        sqlite_url,
        MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        API_RATE_LIMIT="3/minute",
        API_READ_RATE_LIMIT="5/minute",
    )
    yield app
    app.extensions["platform"].close()


def test_the_api_is_rate_limited_per_token(limited_app: Any) -> None:
    tokens = seed_county(limited_app)
    client = limited_app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/broadcasts", json={}, headers=auth(tokens["admin"])).status_code == 422
    refused = client.post("/api/v1/broadcasts", json={}, headers=auth(tokens["admin"]))
    error_of(refused, 429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # Another token is not slowed by the first one's burst; the clock needs no token and no limit.
    assert client.post("/api/v1/broadcasts", json={}, headers=auth(tokens["operator"])).status_code == 422
    for _ in range(10):
        assert client.get("/api/v1/time").status_code == 200
    for _ in range(5):
        assert client.get("/api/v1/regions", headers=auth(tokens["viewer"])).status_code == 200
    error_of(client.get("/api/v1/regions", headers=auth(tokens["viewer"])), 429, "rate_limited")


@contextmanager
def statements(app: Any) -> Iterator[list[str]]:
    """Every SQL statement the app runs inside the block."""
    seen: list[str] = []
    engine = app.extensions["platform"].db.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.strip().split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_an_api_read_does_not_write(client: Any, tokens: dict[str, str], clip_id: int) -> None:
    made = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip_id, "targets": [HUANGSHA]}, headers=auth(tokens["admin"])
    )
    assert made.status_code == 201
    with statements(client.application) as first:
        assert client.get("/api/v1/regions", headers=auth(tokens["operator"])).status_code == 200
    assert "UPDATE" in first  # the token's first use in a minute is noted
    for path in ("/api/v1/regions", "/api/v1/speakers", f"/api/v1/broadcasts/{made.get_json()['id']}"):
        with statements(client.application) as seen:
            assert client.get(path, headers=auth(tokens["operator"])).status_code == 200
        assert not {"INSERT", "UPDATE", "DELETE"} & set(seen), (path, seen)
        assert len([s for s in seen if s in ("SELECT", "WITH")]) <= 8, (path, seen)
