"""API reads served from the per-process caches: scoping, revocation, role changes and writes stay exact."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from broadcast.models import ApiToken, Delivery
from broadcast.services import accounts
from broadcast.web import read_cache, security
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, auth
from tests.broadcast.test_input import statements
from tests.conftest import wait_for


def _db(app: Any) -> Any:
    return app.extensions["platform"].db


def _elsewhere(app: Any, sql: str) -> None:
    """Run a write as another process would: straight on a DB-API connection, unseen by this process's events."""
    raw = _db(app).engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(sql)
        raw.commit()
    finally:
        raw.close()


def _speaker_grids(client: Any, token: str) -> set[str]:
    answer = client.get("/api/v1/speakers?per_page=1000", headers=auth(token))
    assert answer.status_code == 200
    return {s["region_code"] for s in answer.get_json()["items"]}


def _broadcast(client: Any, token: str, target: str) -> int:
    clip = client.post("/api/v1/clips", json={"text": "请注意防火。"}, headers=auth(token))
    assert clip.status_code == 201
    made = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip.get_json()["id"], "targets": [target]}, headers=auth(token)
    )
    assert made.status_code == 201
    return made.get_json()["id"]


def test_a_repeated_read_runs_no_sql_and_answers_the_same(client: Any, tokens: dict[str, str]) -> None:
    first = client.get("/api/v1/speakers?per_page=20", headers=auth(tokens["operator"]))
    with statements(client.application) as seen:
        again = client.get("/api/v1/speakers?per_page=20", headers=auth(tokens["operator"]))
    assert again.status_code == 200
    assert again.data == first.data
    assert seen == []  # token and answer both from the cache: no database work, let alone a write
    assert again.headers["Cache-Control"] == "private, no-cache"
    assert again.headers["ETag"] == first.headers["ETag"]
    unchanged = client.get(
        "/api/v1/speakers?per_page=20", headers={**auth(tokens["operator"]), "If-None-Match": first.headers["ETag"]}
    )
    assert unchanged.status_code == 304
    assert unchanged.data == b""
    assert unchanged.headers["ETag"] == first.headers["ETag"]
    other_page = client.get("/api/v1/speakers?per_page=20&page=2", headers=auth(tokens["operator"]))
    assert other_page.status_code == 200
    assert other_page.get_json()["page"] == 2


def test_a_scoped_user_never_sees_a_wider_cached_answer(client: Any, tokens: dict[str, str]) -> None:
    everything = _speaker_grids(client, tokens["admin"])  # cached for the admin first
    township = _speaker_grids(client, tokens["operator"])
    village = _speaker_grids(client, tokens["village_head"])
    assert any(not g.startswith(HUANGSHA[:9]) for g in everything)
    assert township
    assert all(g.startswith(HUANGSHA[:9]) for g in township)
    assert village
    assert all(g.startswith(HUANGSHA_VILLAGE) for g in village)
    assert township < everything
    assert village < township
    elsewhere = _broadcast(client, tokens["admin"], DALU)
    path = f"/api/v1/broadcasts/{elsewhere}"
    assert client.get(path, headers=auth(tokens["admin"])).status_code == 200  # cached for the admin
    refused = client.get(path, headers=auth(tokens["operator"]))
    assert refused.status_code == 404
    assert refused.get_json()["error"]["code"] == "not_found"


def test_a_write_in_this_process_is_read_at_once(client: Any, tokens: dict[str, str]) -> None:
    app = client.application
    listing = client.get("/api/v1/speakers?per_page=1", headers=auth(tokens["admin"])).get_json()
    speaker_id = listing["items"][0]["id"]
    renamed = client.patch(f"/api/v1/speakers/{speaker_id}", json={"name": "新名字"}, headers=auth(tokens["admin"]))
    assert renamed.status_code == 200
    again = client.get("/api/v1/speakers?per_page=1", headers=auth(tokens["admin"])).get_json()
    assert again["items"][0]["name"] == "新名字"
    made = _broadcast(client, tokens["admin"], HUANGSHA_VILLAGE)
    before = client.get(f"/api/v1/broadcasts/{made}", headers=auth(tokens["admin"])).get_json()
    assert "finished" not in before["counts"]
    with _db(app).transaction() as session:  # as the receipt consumer does when it runs in this process
        delivery = session.scalars(select(Delivery).where(Delivery.broadcast_id == made)).first()
        delivery.state = "finished"
    after = client.get(f"/api/v1/broadcasts/{made}", headers=auth(tokens["admin"])).get_json()
    assert after["counts"]["finished"] == 1


def test_a_revoked_token_is_refused_at_once_here(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/speakers", headers=auth(tokens["operator"])).status_code == 200
    with _db(client.application).transaction() as session:
        for row in session.scalars(
            select(ApiToken).where(ApiToken.user_id == accounts.find_user(session, "operator").id)
        ):
            row.revoked = True
    refused = client.get("/api/v1/speakers", headers=auth(tokens["operator"]))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"


def test_a_token_revoked_by_another_process_is_refused_within_the_bound(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/speakers", headers=auth(tokens["operator"])).status_code == 200
    _elsewhere(
        client.application,
        "UPDATE api_tokens SET revoked = TRUE WHERE user_id = (SELECT id FROM users WHERE username = 'operator')",
    )
    began = time.monotonic()
    wait_for(
        lambda: client.get("/api/v1/speakers", headers=auth(tokens["operator"])).status_code == 401,
        "the revoked token refused",
        timeout=security.TOKEN_CACHE_S + 5,
    )
    assert time.monotonic() - began <= security.TOKEN_CACHE_S + 0.5


def test_a_role_change_here_takes_effect_at_once(client: Any, tokens: dict[str, str]) -> None:
    township = _speaker_grids(client, tokens["operator"])
    with _db(client.application).transaction() as session:
        user = accounts.find_user(session, "operator")
        user.role, user.region_code = "admin", None
    assert _speaker_grids(client, tokens["operator"]) > township


def test_a_role_change_elsewhere_takes_effect_within_the_bound(client: Any, tokens: dict[str, str]) -> None:
    township = _speaker_grids(client, tokens["operator"])
    _elsewhere(client.application, "UPDATE users SET role = 'admin', region_code = NULL WHERE username = 'operator'")
    began = time.monotonic()
    wait_for(lambda: _speaker_grids(client, tokens["operator"]) > township, "the new role applied", timeout=10)
    assert time.monotonic() - began <= security.TOKEN_CACHE_S + read_cache.READ_CACHE_S + 0.5


def test_a_disabled_user_is_refused_at_once_here(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/regions", headers=auth(tokens["operator"])).status_code == 200
    with _db(client.application).transaction() as session:
        accounts.find_user(session, "operator").active = False
    assert client.get("/api/v1/regions", headers=auth(tokens["operator"])).status_code == 401
    assert client.get("/api/v1/speakers", headers=auth(tokens["operator"])).status_code == 401


def test_a_write_elsewhere_is_read_within_the_bound(client: Any, tokens: dict[str, str]) -> None:
    path = "/api/v1/speakers?per_page=1"
    assert client.get(path, headers=auth(tokens["admin"])).get_json()["items"][0]["name"] != "renamed elsewhere"
    _elsewhere(
        client.application, "UPDATE speakers SET name = 'renamed elsewhere' WHERE id = (SELECT min(id) FROM speakers)"
    )
    began = time.monotonic()
    wait_for(
        lambda: client.get(path, headers=auth(tokens["admin"])).get_json()["items"][0]["name"] == "renamed elsewhere",
        "the new name read",
        timeout=10,
    )
    assert time.monotonic() - began <= read_cache.READ_CACHE_S + 0.5
