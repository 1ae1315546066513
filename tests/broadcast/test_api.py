"""The REST API: contract shapes, roles scoped to regions, and bad input that changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Broadcast, Clip, Command, Delivery, Speaker
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, auth


def count(app: Any, model: type) -> int:
    """Rows of a table."""
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Every API error has one shape: {"error": {"code", "message"}}."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert body["error"]["code"]
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def make_clip(client: Any, token: str, text: str = "各位村民请注意，今天下午有大风。") -> dict[str, Any]:
    """A TTS clip through the API."""
    response = client.post("/api/v1/clips", json={"text": text}, headers=auth(token))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_missing_and_wrong_token_are_refused(client: Any, tokens: dict[str, str]) -> None:
    error = assert_error(client.get("/api/v1/regions"), 401, "unauthorized")
    assert "令牌" in error["message"]
    assert_error(client.get("/api/v1/regions", headers=auth("vb_wrong")), 401, "unauthorized")
    error = assert_error(client.get("/api/v1/speakers", headers=auth("nope", "en")), 401)
    assert "token" in error["message"]
    assert_error(client.post("/api/v1/clips", json={"text": "你好"}), 401)
    assert count(client.application, Clip) == 0


def test_regions_and_speakers_contract(client: Any, tokens: dict[str, str]) -> None:
    regions = client.get("/api/v1/regions", headers=auth(tokens["admin"])).get_json()["items"]
    levels = {r["level"] for r in regions}
    assert levels == {"county", "township", "village", "grid"}
    by_code = {r["code"]: r for r in regions}
    assert by_code[HUANGSHA]["parent_code"] == "421224000000"
    assert by_code[HUANGSHA]["name"] == "黄沙铺镇"
    speakers = client.get("/api/v1/speakers", headers=auth(tokens["admin"])).get_json()["items"]
    assert len(speakers) == 24
    assert {"id", "name", "region_code", "online"} <= set(speakers[0])
    assert all(by_code[s["region_code"]]["level"] == "grid" for s in speakers)
    assert not any(s["online"] for s in speakers)
    # An operator of 黄沙铺镇 sees only that township's speakers.
    mine = client.get("/api/v1/speakers", headers=auth(tokens["operator"])).get_json()["items"]
    assert len(mine) == 12
    assert all(s["region_code"].startswith("421224104") for s in mine)


def test_text_clip_is_measured_and_reused(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["operator"])
    assert {"id", "duration_ms", "loudness_lufs", "true_peak_dbtp", "sha256", "url"} <= set(clip)
    assert abs(clip["loudness_lufs"] - -16.0) <= 1.0
    assert clip["true_peak_dbtp"] <= -1.0
    assert clip["duration_ms"] > 1000
    again = make_clip(client, tokens["operator"])
    assert again["id"] == clip["id"]
    assert client.get(clip["url"]).status_code == 403  # neither a session, a token nor a signature
    audio = client.get(clip["url"], headers=auth(tokens["operator"]))  # the clip's own token may fetch it
    assert audio.status_code == 200
    audio.close()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"text": ""}, 422, "media.text_empty"),
        ({"text": "   \n  "}, 422, "media.text_empty"),
        ({"text": "😀🎉"}, 422, "media.text_empty"),
        ({"text": "好" * 5000}, 413, "media.text_too_long"),
        ({"text": 42}, 422, "text_required"),
        ({}, 422, "text_required"),
        ({"text": "你好", "rate": 9}, 422, "invalid_rate"),
    ],
)
def test_bad_text_changes_nothing(client: Any, tokens: dict[str, str], payload: dict, status: int, code: str) -> None:
    assert_error(client.post("/api/v1/clips", json=payload, headers=auth(tokens["admin"])), status, code)
    assert count(client.application, Clip) == 0
    media_dir = client.application.extensions["platform"].media_store.root
    assert not [p for p in media_dir.rglob("*") if p.is_file()]


def test_not_json_is_a_shaped_error(client: Any, tokens: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/broadcasts", data="{not json", headers={**auth(tokens["admin"]), "Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


def test_broadcast_to_township_records_one_delivery_per_speaker(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["operator"])
    response = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]}, headers=auth(tokens["operator"])
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    broadcast_id = response.get_json()["id"]
    detail = client.get(f"/api/v1/broadcasts/{broadcast_id}", headers=auth(tokens["operator"])).get_json()
    speakers = {d["speaker_id"] for d in detail["deliveries"]}
    assert len(speakers) == 12
    assert all(s.startswith("spk-421224104") for s in speakers)
    assert {d["state"] for d in detail["deliveries"]} == {"queued"}  # no broker here: waits for the worker
    assert all(d["started_at"] is None and d["finished_at"] is None for d in detail["deliveries"])
    app = client.application
    with app.extensions["platform"].db.transaction() as session:
        command = session.scalars(select(Command)).one()
        assert command.body["targets"] == [f"region:{HUANGSHA}"]
        assert command.published_at is None
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "broadcast.create")).all()
        assert len(events) == 1
        assert events[0].actor == "operator"
        assert events[0].region_codes == [HUANGSHA]


def test_overlapping_targets_publish_once_per_region(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["admin"])
    grid_speaker = "spk-42122410420101-1"
    response = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip["id"], "targets": [HUANGSHA, HUANGSHA_VILLAGE, grid_speaker, DALU]},
        headers=auth(tokens["admin"]),
    )
    assert response.status_code == 201
    with client.application.extensions["platform"].db.transaction() as session:
        command = session.scalars(select(Command)).one()
        assert sorted(command.body["targets"]) == [f"region:{HUANGSHA}", f"region:{DALU}"]
        assert session.scalar(select(func.count()).select_from(Delivery)) == 24


def _broadcast(client: Any, token: str, lang: str = "zh", **payload: Any) -> Any:
    return client.post("/api/v1/broadcasts", json=payload, headers=auth(token, lang))


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"targets": ["999999999999"]}, 404, "unknown_target"),
        ({"targets": []}, 422, "targets_required"),
        ({"targets": "421224104000"}, 422, "targets_required"),
        ({"targets": [HUANGSHA], "priority": "loud"}, 422, "invalid_priority"),
        ({"targets": [HUANGSHA], "volume": 150}, 422, "invalid_volume"),
        ({"targets": [HUANGSHA], "volume": "x"}, 422, "invalid_volume"),
        ({"targets": [HUANGSHA], "repeat": 0}, 422, "invalid_repeat"),
        ({"targets": [HUANGSHA], "start_at": "tomorrow at noon"}, 422, "invalid_start"),
        ({"targets": [HUANGSHA], "start_at": "2020-01-01T08:00"}, 422, "start_in_past"),
        ({"targets": [HUANGSHA], "start_at": "2999-01-01T08:00"}, 422, "start_too_far"),
        ({"targets": [HUANGSHA], "clip_id": 999999}, 404, "not_found"),
        ({"targets": [HUANGSHA], "clip_id": "abc"}, 404, "not_found"),
    ],
)
def test_bad_broadcasts_change_nothing(
    client: Any, tokens: dict[str, str], payload: dict, status: int, code: str
) -> None:
    clip = make_clip(client, tokens["admin"])
    body = {"clip_id": clip["id"], **payload}
    before = count(client.application, AuditEvent)
    assert_error(_broadcast(client, tokens["admin"], **body), status, code)
    for model in (Broadcast, Delivery, Command):
        assert count(client.application, model) == 0
    assert count(client.application, AuditEvent) == before


def test_errors_speak_the_clients_language(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["admin"])
    zh = assert_error(_broadcast(client, tokens["admin"], clip_id=clip["id"], targets=["123"]), 404)
    en = assert_error(_broadcast(client, tokens["admin"], "en", clip_id=clip["id"], targets=["123"]), 404)
    assert "未知" in zh["message"]
    assert "Unknown" in en["message"]


@pytest.mark.parametrize(
    ("role", "payload", "status"),
    [
        ("operator", {"targets": [HUANGSHA]}, 201),
        ("operator", {"targets": [DALU]}, 403),
        ("operator", {"targets": ["spk-42122420520101-1"]}, 403),
        ("village_head", {"targets": [HUANGSHA_VILLAGE]}, 201),
        ("village_head", {"targets": [HUANGSHA]}, 403),
        ("village_head", {"targets": [HUANGSHA_VILLAGE], "priority": "emergency"}, 403),
        ("viewer", {"targets": [HUANGSHA]}, 403),
        ("admin", {"targets": [HUANGSHA, DALU], "priority": "emergency"}, 201),
    ],
)
def test_roles_are_scoped_to_regions(
    client: Any, tokens: dict[str, str], role: str, payload: dict, status: int
) -> None:
    clip = make_clip(client, tokens["admin"])
    response = _broadcast(client, tokens[role], clip_id=clip["id"], **payload)
    if status == 201:
        assert response.status_code == 201
    else:
        assert_error(response, status, "forbidden")
        assert count(client.application, Broadcast) == 0


def test_broadcasts_of_other_regions_are_invisible(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["admin"])
    created = _broadcast(client, tokens["admin"], clip_id=clip["id"], targets=[DALU]).get_json()
    assert_error(client.get(f"/api/v1/broadcasts/{created['id']}", headers=auth(tokens["operator"])), 404)
    assert client.get(f"/api/v1/broadcasts/{created['id']}", headers=auth(tokens["admin"])).status_code == 200
    assert_error(client.get("/api/v1/broadcasts/99999", headers=auth(tokens["admin"])), 404, "not_found")


def _quiet_window_now() -> str:
    """Two hours of quiet centred on the present minute in Shanghai, at any time of day."""
    now = time.gmtime(time.time() + 8 * 3600)
    minute = now.tm_hour * 60 + now.tm_min
    start, end = (minute - 60) % 1440, (minute + 60) % 1440
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def test_quiet_hours_refuse_all_but_emergency(tmp_path: Any, database_url: str) -> None:
    from tests.broadcast.conftest import seed_county
    from tests.conftest import free_port, make_app

    app = make_app(
        tmp_path / "q", database_url, QUIET_HOURS=_quiet_window_now(), MQTT_URL=f"mqtt://127.0.0.1:{free_port()}"
    )
    try:
        tokens = seed_county(app)
        client = app.test_client()
        clip = make_clip(client, tokens["admin"])
        assert_error(_broadcast(client, tokens["admin"], clip_id=clip["id"], targets=[HUANGSHA]), 422, "quiet_hours")
        ok = _broadcast(client, tokens["admin"], clip_id=clip["id"], targets=[HUANGSHA], priority="emergency")
        assert ok.status_code == 201
    finally:
        app.extensions["platform"].close()


def test_speaker_table_is_untouched_by_reads(client: Any, tokens: dict[str, str]) -> None:
    client.get("/api/v1/speakers", headers=auth(tokens["admin"]))
    assert count(client.application, Speaker) == 24


def test_clips_of_other_regions_cannot_be_used(client: Any, tokens: dict[str, str]) -> None:
    mine = make_clip(client, tokens["village_head"], "黄沙村的通知。")
    county = make_clip(client, tokens["admin"], "全县的普法节目。")
    assert client.get(f"/api/v1/clips/{mine['id']}", headers=auth(tokens["operator"])).status_code == 200
    assert client.get(f"/api/v1/clips/{county['id']}", headers=auth(tokens["village_head"])).status_code == 200
    township = make_clip(client, tokens["operator"], "黄沙铺镇的内部通知。")
    assert_error(client.get(f"/api/v1/clips/{township['id']}", headers=auth(tokens["village_head"])), 404)
    response = _broadcast(client, tokens["village_head"], clip_id=township["id"], targets=[HUANGSHA_VILLAGE])
    assert_error(response, 404, "not_found")


def test_a_slow_recording_does_not_eat_the_start_lead(
    client: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long the deliveries take to record, the command leaves with the full lead before its start."""
    from broadcast.services import regions

    resolve = regions.resolve_targets

    def slow_resolve(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)  # a county's worth of rows on a slow disk, longer than the 0.3 s lead
        return resolve(*args, **kwargs)

    monkeypatch.setattr(regions, "resolve_targets", slow_resolve)
    clip = make_clip(client, tokens["admin"])
    asked = time.time()
    reply = _broadcast(client, tokens["admin"], clip_id=clip["id"], targets=[HUANGSHA])
    assert reply.status_code == 201, reply.get_data(as_text=True)
    with client.application.extensions["platform"].db.transaction() as session:
        command = session.scalars(select(Command)).one()
        item = session.get(Broadcast, reply.get_json()["id"])
        body = command.body["body"]
        assert body["start_at"] == item.start_at == reply.get_json()["start_at"]
        assert body["start_at"] >= command.issued_at + 0.3 - 0.001, "the lead counts from the command, not the request"
        assert body["start_at"] >= asked + 0.6 + 0.3
        assert item.expires_at - item.start_at == pytest.approx(900 + clip["duration_ms"] / 1000, abs=1)
