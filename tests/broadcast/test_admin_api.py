"""Managing the county over the API: regions, speakers, imports/exports, users and tokens, by role and scope."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.errors import BroadcastError
from broadcast.models import AuditEvent, Region, Schedule, Speaker
from broadcast.services import accounts
from speakers.mosquitto import parse_mosquitto_acl, read_password_file, verify_password
from tests.broadcast.conftest import COUNTY, DALU, HUANGSHA, HUANGSHA_VILLAGE, auth, seed_county
from tests.broadcast.test_import import SPEAKER_HEADERS, xlsx
from tests.conftest import free_port, make_app

GRID = HUANGSHA_VILLAGE + "01"
DALU_GRID = "42122420520101"


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The app on each database with its own (embedded) broker files; no broker process is needed here."""
    application = make_app(tmp_path / "instance", database_url, MQTT_URL="", MQTT_PORT=free_port())
    yield application
    application.extensions["platform"].close()


@pytest.fixture
def tokens(app: Any) -> dict[str, str]:
    """API tokens by role on the seeded demo county."""
    return seed_county(app)


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"]
    assert body["error"]["message"]
    return body["error"]


def _count(app: Any, model: type) -> int:
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_regions_are_created_renamed_and_retired_with_the_code_rules(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    new_village = {"code": "421224104204", "name": "新村", "level": "村", "parent_code": HUANGSHA}
    made = client.post("/api/v1/regions", json=new_village, headers=admin)
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["level"] == "village"
    _error(client.post("/api/v1/regions", json=new_village, headers=admin), 409)
    outside = {**new_village, "code": "421224205299"}
    assert _error(client.post("/api/v1/regions", json=outside, headers=admin), 422)["code"] == "code_outside_parent"
    short = {**new_village, "code": "4212241042"}
    assert _error(client.post("/api/v1/regions", json=short, headers=admin), 422)["code"] == "invalid_code"
    grid = {"code": "42122410420401", "name": "新村一组", "level": "grid", "parent_code": "421224104204"}
    assert client.post("/api/v1/regions", json=grid, headers=admin).status_code == 201
    longer = {**grid, "code": "4212241042040201", "name": "新村二组"}
    assert client.post("/api/v1/regions", json=longer, headers=admin).status_code == 201

    renamed = client.patch("/api/v1/regions/421224104204", json={"name": "新建村"}, headers=admin)
    assert renamed.get_json()["name"] == "新建村"
    moved = client.patch("/api/v1/regions/421224104204", json={"parent_code": DALU}, headers=admin)
    assert _error(moved, 422)["code"] == "code_outside_parent"

    in_use = _error(client.delete(f"/api/v1/regions/{GRID}", headers=admin), 409)
    assert in_use["code"] == "region_in_use"
    assert f"spk-{GRID}-1" in in_use["details"]["dependents"]["speakers"]
    parent = _error(client.delete("/api/v1/regions/421224104204", headers=admin), 409)
    assert parent["details"]["dependents"]["regions"] == ["42122410420401", "4212241042040201"]
    users = _error(client.delete(f"/api/v1/regions/{HUANGSHA_VILLAGE}", headers=admin), 409)
    assert "village" in users["details"]["dependents"]["users"]
    with app.extensions["platform"].db.transaction() as session:
        session.add(Schedule(targets=["42122410420401"], dtstart="2026-12-01T08:00:00", rule="FREQ=DAILY"))
    held = _error(client.delete("/api/v1/regions/42122410420401", headers=admin), 409)
    assert list(held["details"]["dependents"]) == ["schedules"]
    with app.extensions["platform"].db.transaction() as session:
        session.scalars(select(Schedule)).one().state = "ended"
    assert client.delete("/api/v1/regions/42122410420401", headers=admin).status_code == 204
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Region, "42122410420401") is None
        assert session.scalar(select(func.count()).where(AuditEvent.action == "region.retire")) == 1


def test_region_management_follows_roles_and_scope(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    village = {"code": "421224104205", "name": "操作员建的村", "level": "village", "parent_code": HUANGSHA}
    _error(client.post("/api/v1/regions", json=village, headers=auth(tokens["viewer"])), 403)
    _error(client.post("/api/v1/regions", json=village, headers=auth(tokens["village_head"])), 403)
    assert client.post("/api/v1/regions", json=village, headers=auth(tokens["operator"])).status_code == 201
    elsewhere = {**village, "code": "421224205205", "parent_code": DALU}
    _error(client.post("/api/v1/regions", json=elsewhere, headers=auth(tokens["operator"])), 403)
    _error(client.patch(f"/api/v1/regions/{HUANGSHA}", json={"name": "改"}, headers=auth(tokens["operator"])), 403)
    english = _error(client.post("/api/v1/regions", json={"code": "x"}, headers=auth(tokens["admin"], "en")), 422)
    assert "name" in english["message"]
    unknown = _error(
        client.post("/api/v1/regions", json={**village, "colour": "red"}, headers=auth(tokens["admin"])), 422
    )
    assert "colour" in unknown["message"]
    assert _error(
        client.patch(f"/api/v1/speakers/spk-{GRID}-1", json={"enabled": "no"}, headers=auth(tokens["admin"])), 422
    )


def test_speakers_are_added_edited_moved_disabled_and_retired(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    body = {"id": "spk-new-1", "name": "村口音柱", "grid_code": GRID, "latitude": 29.6, "longitude": 114.52}
    bad = {**body, "latitude": 95}
    assert _error(client.post("/api/v1/speakers", json=bad, headers=admin), 422)["code"] == "invalid_coordinate"
    _error(client.post("/api/v1/speakers", json={**body, "grid_code": HUANGSHA_VILLAGE}, headers=admin), 422)
    made = client.post("/api/v1/speakers", json={**body, "address": "村委会门口", "test_speaker": True}, headers=admin)
    assert made.status_code == 201, made.get_data(as_text=True)
    shown = made.get_json()
    assert (shown["latitude"], shown["address"], shown["test_speaker"], shown["state"]) == (
        29.6,
        "村委会门口",
        True,
        "never_seen",
    )
    _error(client.post("/api/v1/speakers", json=body, headers=admin), 409)

    provisioned = client.post("/api/v1/speakers/spk-new-1/provision", headers=admin)
    assert provisioned.status_code == 200
    assert "attachment" in provisioned.headers["Content-Disposition"]
    config = json.loads(provisioned.get_data(as_text=True))
    assert GRID in config["regions"]
    broker = app.extensions["platform"].broker_dir
    assert verify_password(config["password"], read_password_file(broker / "passwd")["spk-new-1"])

    moved = client.patch(
        "/api/v1/speakers/spk-new-1", json={"grid_code": DALU_GRID, "notes": "搬到大路"}, headers=admin
    )
    assert moved.get_json()["grid_code"] == DALU_GRID
    acl = (broker / "acl").read_text()
    rules = parse_mosquitto_acl(acl)
    assert rules is not None
    section = acl.split("user spk-new-1")[1].split("\nuser ")[0]
    assert DALU_GRID in section
    assert GRID not in section

    disabled = client.patch("/api/v1/speakers/spk-new-1", json={"enabled": False}, headers=admin)
    assert disabled.get_json()["state"] == "disabled"
    assert "spk-new-1" not in read_password_file(broker / "passwd")
    _error(client.post("/api/v1/speakers/spk-new-1/provision", headers=admin), 409)
    assert client.patch("/api/v1/speakers/spk-new-1", json={"enabled": True}, headers=admin).status_code == 200
    retired = client.delete("/api/v1/speakers/spk-new-1", headers=admin)
    assert retired.get_json()["state"] == "retired"
    _error(client.patch("/api/v1/speakers/spk-new-1", json={"name": "再改"}, headers=admin), 409)
    listed = client.get("/api/v1/speakers?state=retired", headers=admin).get_json()
    assert [s["id"] for s in listed["items"]] == ["spk-new-1"]
    assert "spk-new-1" not in {s["id"] for s in client.get("/api/v1/speakers", headers=admin).get_json()["items"]}


def test_replacing_a_speaker_shuts_the_old_box_out_and_keeps_its_identity(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    speaker_id = f"spk-{GRID}-1"
    first = json.loads(client.post(f"/api/v1/speakers/{speaker_id}/provision", headers=admin).get_data(as_text=True))
    passwd = app.extensions["platform"].broker_dir / "passwd"
    assert verify_password(first["password"], read_password_file(passwd)[speaker_id])
    with app.extensions["platform"].db.transaction() as session:
        speaker = session.get(Speaker, speaker_id)
        speaker.online, speaker.agent_version = True, "0.1.0"
    replaced = client.post(
        f"/api/v1/speakers/{speaker_id}/replace", json={"sim_number": "1440123456789"}, headers=admin
    )
    assert replaced.status_code == 200, replaced.get_data(as_text=True)
    second = json.loads(replaced.get_data(as_text=True))
    assert second["speaker_id"] == speaker_id
    assert second["regions"] == first["regions"]
    hashed = read_password_file(passwd)[speaker_id]
    assert verify_password(second["password"], hashed)
    assert not verify_password(first["password"], hashed)
    shown = client.get(f"/api/v1/speakers/{speaker_id}", headers=admin).get_json()
    assert (shown["sim_number"], shown["online"], shown["agent_version"]) == ("1440123456789", False, None)
    with app.extensions["platform"].db.transaction() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == speaker_id)).all()
    assert "speaker.replace" in actions


def test_speaker_list_is_paginated_and_filtered_by_region_and_state(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    everything = client.get("/api/v1/speakers", headers=admin).get_json()
    assert everything["total"] == len(everything["items"]) == 24
    page = client.get("/api/v1/speakers?per_page=5&page=2", headers=admin).get_json()
    assert (page["total"], page["page"], len(page["items"])) == (24, 2, 5)
    assert page["items"][0]["id"] == everything["items"][5]["id"]
    dalu = client.get(f"/api/v1/speakers?region={DALU}", headers=admin).get_json()
    assert dalu["total"] == 12
    assert all(s["grid_code"].startswith(DALU[:9]) for s in dalu["items"])
    mine = client.get(f"/api/v1/speakers?region={DALU}", headers=auth(tokens["operator"])).get_json()
    assert mine["total"] == 0
    county = client.get(f"/api/v1/speakers?region={COUNTY}", headers=auth(tokens["operator"])).get_json()
    assert county["total"] == 12
    assert client.get("/api/v1/speakers?state=online", headers=admin).get_json()["total"] == 0
    assert client.get("/api/v1/speakers?state=never_seen", headers=admin).get_json()["total"] == 24
    assert _error(client.get("/api/v1/speakers?state=happy", headers=admin), 422)["code"] == "invalid_state"
    assert _error(client.get("/api/v1/speakers?page=x", headers=admin), 422)["code"] == "invalid_argument"


def test_import_endpoint_reports_rows_and_applies_all_or_nothing(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    good = [["spk-imp-1", "导入音柱", GRID, 29.61, 114.51, "", "否"]]
    bad = [*good, ["spk-imp-2", "坏的", "42122400000099", 29.61, 114.51, "", "否"]]

    def upload(rows: list[list[Any]], query: str = "", who: dict[str, str] = admin) -> Any:
        data = {"file": (io.BytesIO(xlsx(SPEAKER_HEADERS, rows)), "speakers.xlsx")}
        return client.post(f"/api/v1/imports/speakers{query}", data=data, headers=who)

    dry = upload(good, "?dry_run=1")
    assert dry.status_code == 200
    assert (dry.get_json()["created"], dry.get_json()["applied"]) == (1, False)
    before = _count(app, Speaker)
    checked = upload(bad, "?dry_run=1").get_json()
    assert (checked["applied"], [p["row"] for p in checked["problems"]]) == (False, [3])
    rejected = _error(upload(bad), 422)
    assert rejected["code"] == "import_rejected"
    assert rejected["details"]["report"]["problems"][0]["row"] == 3
    assert rejected["details"]["report"]["problems"][0]["column_zh"] == "网格代码"
    assert _count(app, Speaker) == before
    assert upload(good).get_json()["applied"] is True
    assert _count(app, Speaker) == before + 1
    outside = [["spk-imp-3", "越权", DALU_GRID, "", "", "", "否"]]
    report = _error(upload(outside, who=auth(tokens["operator"])), 422)["details"]["report"]
    assert report["problems"][0]["code"] == "forbidden"
    _error(client.post("/api/v1/imports/regions", data={}, headers=admin), 422)

    exported = client.get("/api/v1/exports/speakers.xlsx", headers=admin)
    assert exported.status_code == 200
    assert exported.data.startswith(b"PK")
    csv_export = client.get("/api/v1/exports/regions.csv", headers=auth(tokens["operator"]))
    lines = csv_export.data.decode("utf-8-sig").splitlines()
    assert lines[0] == "区划代码,名称,上级代码,层级"
    assert not any(line.startswith(DALU) for line in lines)
    assert client.get("/api/v1/templates/speakers.xlsx", headers=admin).status_code == 200
    _error(client.get("/api/v1/exports/speakers.pdf", headers=admin), 404)


def test_users_and_tokens_are_managed_by_admins_and_operators_in_their_region(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    admin = auth(tokens["admin"])
    operator = auth(tokens["operator"])
    made = client.post(
        "/api/v1/users",
        json={"username": "clerk", "role": "village_head", "region_code": HUANGSHA_VILLAGE},
        headers=operator,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    password = made.get_json()["password"]
    assert len(password) >= 10
    _error(client.post("/api/v1/users", json={"username": "boss", "role": "admin"}, headers=operator), 403)
    elsewhere = {"username": "far", "role": "operator", "region_code": DALU}
    _error(client.post("/api/v1/users", json=elsewhere, headers=operator), 403)
    _error(client.get("/api/v1/users", headers=auth(tokens["viewer"])), 403)
    names = {u["username"] for u in client.get("/api/v1/users", headers=operator).get_json()["items"]}
    assert {"clerk", "village", "viewer", "operator"} <= names
    assert "admin" not in names

    platform = app.extensions["platform"]
    limits = {"max_failures": 3, "lock_seconds": 600}
    for _ in range(3):
        with platform.db.transaction() as session, pytest.raises(BroadcastError, match="Wrong"):
            accounts.login(session, "clerk", "wrong-password-1", "10.0.0.9", **limits)
    with platform.db.transaction() as session, pytest.raises(BroadcastError, match="Too many"):
        accounts.login(session, "clerk", password, "10.0.0.9", **limits)  # locked out, even with the password
    shown = {u["username"]: u for u in client.get("/api/v1/users", headers=admin).get_json()["items"]}
    assert shown["clerk"]["failed_logins"] == 3
    assert client.post("/api/v1/users/clerk/unlock", headers=operator).get_json()["cleared"] == 3
    with platform.db.transaction() as session:
        assert accounts.login(session, "clerk", password, "10.0.0.9", **limits).username == "clerk"

    reset = client.post("/api/v1/users/clerk/reset-password", headers=operator).get_json()["password"]
    assert reset != password
    token = client.post("/api/v1/users/clerk/tokens", headers=admin).get_json()["token"]
    assert client.get("/api/v1/regions", headers=auth(token)).status_code == 200
    listed = client.get("/api/v1/users/clerk/tokens", headers=admin).get_json()["items"]
    assert listed[0]["prefix"] == token[:10]
    assert "token" not in listed[0]
    client.delete(f"/api/v1/tokens/{listed[0]['id']}", headers=admin)
    _error(client.get("/api/v1/regions", headers=auth(token)), 401)

    changed = client.patch("/api/v1/users/clerk", json={"role": "viewer", "region_code": HUANGSHA}, headers=operator)
    assert changed.get_json()["role"] == "viewer"
    disabled = client.patch("/api/v1/users/clerk", json={"active": False}, headers=operator)
    assert disabled.get_json()["active"] is False
    _error(client.patch("/api/v1/users/admin", json={"active": False}, headers=operator), 403)
    _error(client.patch("/api/v1/users/admin", json={"active": False}, headers=admin), 403)

    own = client.post("/api/v1/me/password", json={"old": "nope", "new": "another-password-1"}, headers=operator)
    assert _error(own, 403)["code"] == "wrong_password"
    good = {"old": "operator-password-1", "new": "another-password-1"}
    assert client.post("/api/v1/me/password", json=good, headers=operator).status_code == 200
