"""The schedules API: contract shapes, Chinese summary, bad input that saves nothing, scope, pause/delete, stop."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Command, Delivery, Schedule
from broadcast.services import accounts, regions, schedule_checks
from broadcast.services import schedules as services_schedules
from schedules import build
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, auth, seed_county
from tests.broadcast.test_api import assert_error
from tests.conftest import free_port, make_app

SH = ZoneInfo("Asia/Shanghai")


def tomorrow(hour: int = 7, minute: int = 30) -> str:
    """Local (Shanghai) wall time tomorrow, as a form would send it."""
    day = datetime.now(SH).date() + timedelta(days=1)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}"


def clip_id(client: Any, token: str, text: str = "普法讲堂第一集。") -> int:
    response = client.post("/api/v1/clips", json={"text": text}, headers=auth(token))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def schedules(app: Any) -> int:
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(Schedule)) or 0


def body(clip: int, **extra: Any) -> dict[str, Any]:
    return {
        "clip_id": clip,
        "targets": [HUANGSHA_VILLAGE],
        "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR",
        "dtstart": tomorrow(),
        "timezone": "Asia/Shanghai",
        **extra,
    }


def test_create_answers_summary_and_next_occurrences(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["village_head"])
    response = client.post(
        "/api/v1/schedules", json=body(clip, until="2027-06-30"), headers=auth(tokens["village_head"])
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["summary"].startswith("每周一、三、五 07:30，至 2027年6月30日，共 ")
    assert created["summary"].endswith(" 次")
    nexts = [datetime.fromisoformat(t) for t in created["next_occurrences"]]
    assert len(nexts) == 10
    assert all(
        t.utcoffset() == timedelta(hours=8) and t.strftime("%H:%M %a") in {f"07:30 {d}" for d in ("Mon", "Wed", "Fri")}
        for t in nexts
    )
    shown = client.get(f"/api/v1/schedules/{created['id']}", headers=auth(tokens["village_head"])).get_json()
    assert shown["summary"] == created["summary"]
    assert shown["next_occurrences"] == created["next_occurrences"]
    assert shown["history"] == []
    listed = client.get("/api/v1/schedules", headers=auth(tokens["operator"])).get_json()["items"]
    assert [s["id"] for s in listed] == [created["id"]]
    with client.application.extensions["platform"].db.transaction() as session:
        assert session.scalar(select(AuditEvent).where(AuditEvent.action == "schedule.create")) is not None


def test_preview_saves_nothing(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["admin"])
    shown = client.post("/api/v1/schedules/preview", json=body(clip, count=3), headers=auth(tokens["admin"]))
    assert shown.status_code == 200
    assert shown.get_json()["summary"] == "每周一、三、五 07:30，共 3 次"
    assert len(shown.get_json()["next_occurrences"]) == 3
    assert schedules(client.application) == 0


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"clip_id": 99999}, 404, "not_found"),
        ({"clip_id": None}, 422, "content_required"),
        ({"until": "2020-01-01"}, 422, "schedule.end_before_start"),
        ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, 422, "schedule.never_fires"),
        ({"rrule": None, "cron": "0 0 30 2 *"}, 422, "schedule.never_fires"),
        ({"timezone": "Asia/Atlantis"}, 422, "schedule.unknown_timezone"),
        ({"targets": [DALU]}, 403, "forbidden"),
        ({"targets": ["nope"]}, 404, "unknown_target"),
        ({"rrule": None, "cron": "* * * * *"}, 422, "schedule.too_dense"),
        ({"rrule": "FREQ=SECONDLY"}, 422, "schedule.unsupported_rrule"),
        ({"dtstart": "2020-01-01T07:30", "rrule": None}, 422, "schedule.all_in_past"),
        ({"priority": "emergency"}, 403, "forbidden"),
        ({"volume": 101}, 422, "invalid_volume"),
    ],
)
def test_bad_input_gets_a_clear_error_and_saves_nothing(
    client: Any, tokens: dict[str, str], change: dict[str, Any], status: int, code: str
) -> None:
    clip = clip_id(client, tokens["village_head"])
    good = client.post("/api/v1/schedules/preview", json=body(clip), headers=auth(tokens["village_head"]))
    assert good.status_code == 200  # the positive path works with the same user and clip
    bad = body(clip) | change
    response = client.post("/api/v1/schedules", json=bad, headers=auth(tokens["village_head"]))
    error = assert_error(response, status, code)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
    english = client.post("/api/v1/schedules", json=bad, headers=auth(tokens["village_head"], "en"))
    assert english.get_json()["error"]["message"].isascii()
    assert schedules(client.application) == 0


def test_routine_occurrences_inside_quiet_hours_are_refused_naming_the_window(tmp_path: Path, sqlite_url: str) -> None:
    app = make_app(tmp_path / "i", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", QUIET_HOURS="22:00-06:00")
    try:
        tokens = seed_county(app)
        client = app.test_client()
        clip = clip_id(client, tokens["admin"])
        fine = client.post("/api/v1/schedules", json=body(clip), headers=auth(tokens["admin"]))
        assert fine.status_code == 201
        late = body(clip, dtstart=tomorrow(23, 0))
        error = assert_error(
            client.post("/api/v1/schedules", json=late, headers=auth(tokens["admin"])), 422, "quiet_hours"
        )
        assert "22:00-06:00" in error["message"]
        assert schedules(app) == 1
        emergency = client.post(
            "/api/v1/schedules", json=late | {"priority": "emergency"}, headers=auth(tokens["admin"])
        )
        assert emergency.status_code == 201
    finally:
        app.extensions["platform"].close()


def test_overlaps_are_listed_with_the_ladders_resolution(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["admin"])
    first = client.post("/api/v1/schedules", json=body(clip, rrule="FREQ=DAILY"), headers=auth(tokens["admin"]))
    assert first.get_json()["conflicts"] == []
    other_place = body(clip, rrule="FREQ=DAILY", targets=[DALU])
    assert (
        client.post("/api/v1/schedules", json=other_place, headers=auth(tokens["admin"])).get_json()["conflicts"] == []
    )
    urgent = body(clip, rrule="FREQ=DAILY", targets=[HUANGSHA], priority="urgent", dtstart=tomorrow(7, 30))
    found = client.post("/api/v1/schedules", json=urgent, headers=auth(tokens["admin"])).get_json()["conflicts"]
    assert len(found) == 7  # every day of the week looked at
    assert found[0]["schedule_id"] == first.get_json()["id"]
    assert found[0]["outcome"] == "queued"
    assert "紧急通知" in found[0]["message"]


def test_the_overlap_check_reads_only_schedules_sharing_speakers(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    clip = clip_id(client, tokens["admin"])
    here = client.post("/api/v1/schedules", json=body(clip, rrule="FREQ=DAILY"), headers=auth(tokens["admin"]))
    township = body(clip, rrule="FREQ=DAILY", targets=[HUANGSHA])
    above = client.post("/api/v1/schedules", json=township, headers=auth(tokens["admin"]))
    elsewhere = client.post("/api/v1/schedules", json=body(clip, targets=[DALU]), headers=auth(tokens["admin"]))
    read: list[int] = []

    def spy(item: Schedule) -> Any:
        read.append(item.id)
        return services_schedules.recurrence_of(item)

    platform = app.extensions["platform"]
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        candidate = build(dtstart=tomorrow(), rrule_text="FREQ=DAILY")
        reached = regions.resolve_targets(session, [HUANGSHA_VILLAGE], admin).targets
        found = schedule_checks.overlaps(
            session, candidate, schedule_id=None, targets=reached, priority="normal", clip_id=clip,
            playlist_id=None, now=datetime.now(SH), recurrence_of=spy,
        )  # fmt: skip
    assert {c["schedule_id"] for c in found} == {here.get_json()["id"], above.get_json()["id"]}
    assert sorted(read) == sorted([here.get_json()["id"], above.get_json()["id"]])  # DALU's never loaded
    assert elsewhere.get_json()["id"] not in read


def test_pause_resume_edit_delete_within_scope(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["village_head"])
    ident = client.post("/api/v1/schedules", json=body(clip), headers=auth(tokens["village_head"])).get_json()["id"]
    url = f"/api/v1/schedules/{ident}"
    assert_error(client.patch(url, json={"paused": True}, headers=auth(tokens["viewer"])), 403, "forbidden")
    paused = client.patch(url, json={"paused": True}, headers=auth(tokens["operator"]))
    assert paused.status_code == 200
    assert paused.get_json()["state"] == "paused"
    assert paused.get_json()["next_occurrences"] == []
    resumed = client.patch(url, json={"paused": False}, headers=auth(tokens["village_head"])).get_json()
    assert resumed["state"] == "active"
    edited = client.patch(
        url, json={"rrule": "FREQ=DAILY", "dtstart": tomorrow(8, 0)}, headers=auth(tokens["village_head"])
    )
    assert edited.get_json()["summary"] == "每天 08:00"
    bad_edit = client.patch(url, json={"timezone": "Nowhere/Land"}, headers=auth(tokens["village_head"]))
    assert_error(bad_edit, 422, "schedule.unknown_timezone")
    assert client.get(url, headers=auth(tokens["village_head"])).get_json()["summary"] == "每天 08:00"
    assert_error(client.patch(url, json={"owner": 1}, headers=auth(tokens["village_head"])), 422, "invalid_fields")
    gone = client.delete(url, headers=auth(tokens["village_head"]))
    assert gone.get_json() == {"id": ident, "state": "deleted"}
    assert client.get(url, headers=auth(tokens["village_head"])).get_json()["state"] == "deleted"
    assert client.get("/api/v1/schedules", headers=auth(tokens["village_head"])).get_json()["items"] == []
    assert_error(client.delete(url, headers=auth(tokens["village_head"])), 409, "schedule_deleted")
    with client.application.extensions["platform"].db.transaction() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "schedule")).all()
    assert actions == ["schedule.create", "schedule.pause", "schedule.resume", "schedule.edit", "schedule.delete"]


def test_a_schedule_outside_the_users_region_is_not_found(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["admin"])
    dalu = client.post("/api/v1/schedules", json=body(clip, targets=[DALU]), headers=auth(tokens["admin"])).get_json()
    assert_error(client.get(f"/api/v1/schedules/{dalu['id']}", headers=auth(tokens["operator"])), 404, "not_found")
    assert_error(client.delete(f"/api/v1/schedules/{dalu['id']}", headers=auth(tokens["operator"])), 404, "not_found")
    assert client.get("/api/v1/schedules", headers=auth(tokens["operator"])).get_json()["items"] == []


def test_cancel_one_occurrence(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["admin"])
    created = client.post(
        "/api/v1/schedules", json=body(clip, rrule="FREQ=DAILY"), headers=auth(tokens["admin"])
    ).get_json()
    url = f"/api/v1/schedules/{created['id']}/cancel"
    second = created["next_occurrences"][1]
    assert_error(
        client.post(url, json={"at": tomorrow(9, 0)}, headers=auth(tokens["admin"])), 404, "no_such_occurrence"
    )
    after = client.post(url, json={"at": second}, headers=auth(tokens["admin"])).get_json()
    assert second not in after["next_occurrences"]
    assert after["next_occurrences"][0] == created["next_occurrences"][0]
    assert after["summary"] == "每天 07:30，跳过 1 个日期"


def test_stop_a_broadcast_sends_a_signed_stop_and_ends_its_deliveries(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["operator"])
    made = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip, "targets": [HUANGSHA_VILLAGE]}, headers=auth(tokens["operator"])
    ).get_json()
    url = f"/api/v1/broadcasts/{made['id']}/stop"
    assert_error(client.post(url, headers=auth(tokens["viewer"])), 403, "forbidden")
    dalu_user_token = tokens["admin"]
    stopped = client.post(url, headers=auth(tokens["village_head"]))
    assert stopped.status_code == 200, stopped.get_data(as_text=True)
    assert stopped.get_json()["stopped"] is True
    with client.application.extensions["platform"].db.transaction() as session:
        states = set(session.scalars(select(Delivery.reason).where(Delivery.broadcast_id == made["id"])))
        stop = session.scalar(select(Command).where(Command.kind == "stop"))
        assert session.scalar(select(AuditEvent).where(AuditEvent.action == "broadcast.stop")) is not None
    assert states == {"stopped:by_user"}
    assert stop is not None
    assert stop.body["body"] == {"broadcast_id": str(made["id"])}
    other = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip_id(client, dalu_user_token), "targets": [DALU]},
        headers=auth(dalu_user_token),
    ).get_json()
    assert_error(
        client.post(f"/api/v1/broadcasts/{other['id']}/stop", headers=auth(tokens["operator"])), 404, "not_found"
    )


def test_clip_library_and_playlists(client: Any, tokens: dict[str, str]) -> None:
    episodes = [clip_id(client, tokens["operator"], f"普法讲堂第{n}集。") for n in (1, 2, 3)]
    tagged = client.patch(
        f"/api/v1/clips/{episodes[0]}", json={"title": "普法 1", "tags": ["普法"]}, headers=auth(tokens["operator"])
    )
    assert tagged.get_json()["tags"] == ["普法"]
    listed = client.get("/api/v1/clips?tag=普法", headers=auth(tokens["operator"])).get_json()["items"]
    assert [c["title"] for c in listed] == ["普法 1"]
    assert_error(
        client.patch(f"/api/v1/clips/{episodes[0]}", json={"tags": "x"}, headers=auth(tokens["operator"])), 422
    )
    series = client.post(
        "/api/v1/playlists",
        json={"title": "普法系列", "clip_ids": episodes, "mode": "advance"},
        headers=auth(tokens["operator"]),
    )
    assert series.status_code == 201
    playlist = series.get_json()["id"]
    made = client.post(
        "/api/v1/schedules",
        json=body(None, playlist_id=playlist, rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR") | {"clip_id": None},
        headers=auth(tokens["operator"]),
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["summary"] == "工作日（周一至周五） 07:30"
    retired = client.patch(f"/api/v1/clips/{episodes[1]}", json={"retired": True}, headers=auth(tokens["operator"]))
    assert retired.get_json()["retired"] is True
    assert_error(
        client.post("/api/v1/schedules", json=body(episodes[1]), headers=auth(tokens["operator"])), 422, "clip_retired"
    )
