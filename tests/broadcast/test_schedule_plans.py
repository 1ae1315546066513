"""The scheduler's bulk path: many schedules in a few statements, the same answers as one broadcast at a time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast import scheduler
from broadcast.errors import BroadcastError
from broadcast.models import AuditEvent, Broadcast, Delivery, Schedule, ScheduleRun, Speaker, User
from broadcast.services import accounts, audit_chain, regions
from broadcast.services.schedule_targets import TargetIndex
from tests.broadcast.conftest import COUNTY, DALU, HUANGSHA, HUANGSHA_VILLAGE, auth, seed_county
from tests.broadcast.test_schedules_api import clip_id
from tests.broadcast.test_schedules_runner import base, daily, make
from tests.conftest import free_port, make_app
from tests.sql import recorded_statements


def test_target_index_answers_as_resolve_targets(app: Any, tokens: dict[str, str]) -> None:
    with app.extensions["platform"].db.transaction() as session:
        speaker = session.scalars(select(Speaker).order_by(Speaker.id)).first()
        index = TargetIndex(session)
        cases = [[COUNTY], [HUANGSHA], [DALU], [HUANGSHA_VILLAGE], [HUANGSHA, HUANGSHA_VILLAGE], [speaker.id]]
        cases += [[HUANGSHA_VILLAGE, speaker.id], ["no-such-target"], [], [speaker.grid_code]]
        compared = 0
        for name in ("admin", "operator", "village"):
            user = accounts.find_user(session, name)
            for targets in cases:
                try:
                    expected = regions.resolve_targets(session, list(targets), user)
                except BroadcastError:
                    expected = None
                assert index.resolve(list(targets), user) == expected, (name, targets)
                compared += expected is not None
        assert compared >= 10  # most cases resolve: the comparison is not all refusals


def test_a_county_of_schedules_is_planned_in_a_few_statements_exactly_once(
    app: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ids = [make(app, daily(clip, day, "7,19"), day.timestamp() - 3600) for _ in range(12)]
    monkeypatch.setattr(scheduler, "BATCH", 5)
    with recorded_statements(platform.db.engine) as statements:
        assert scheduler.run_due(platform, day.timestamp()) == 24
    # One INSERT per batch of 5 schedules (10 broadcasts) on SQLite, a COPY (not seen here) on PostgreSQL;
    # never one per occurrence, nor one per delivery.
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO BROADCASTS")]
    assert len(inserts) <= 3
    assert 0 < len(statements) < 24 * 4
    assert scheduler.run_due(platform, day.timestamp()) == 0
    assert scheduler.run_due(platform, (day + timedelta(minutes=30)).timestamp()) == 0
    with platform.db.transaction() as session:
        made = session.execute(select(ScheduleRun.schedule_id, ScheduleRun.occurrence_at, ScheduleRun.broadcast_id))
        rows = made.tuples().all()
        assert len(rows) == len(set(rows)) == 24
        assert {sid for sid, _at, _bid in rows} == set(ids)
        items = session.scalars(select(Broadcast).where(Broadcast.id.in_([bid for *_x, bid in rows]))).all()
        assert len(items) == 24
        assert all(b.source == "schedule" and b.status == "sending" for b in items)
        assert {b.start_at for b in items} == {at for _sid, at, _bid in rows}
        per = session.execute(select(Delivery.broadcast_id, func.count()).group_by(Delivery.broadcast_id)).all()
        assert len({n for _bid, n in per}) == 1  # every occurrence reaches the same village's speakers
        logged = session.scalars(select(AuditEvent).where(AuditEvent.action == "broadcast.create")).all()
        assert sorted(int(e.object_id) for e in logged) == sorted(b.id for b in items)
        assert all(e.detail["source"] == "schedule" and e.detail["speakers"] == per[0][1] for e in logged)
        key = audit_chain.derive_key(platform.settings["SECRET_KEY"])
        assert audit_chain.verify(session, key).ok  # the bulk path seals its audit entries like any other


def test_a_refused_owner_in_a_batch_is_recorded_and_the_rest_still_plays(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    fine = make(app, daily(clip, day, "7"), day.timestamp() - 3600)
    village_schedule = make(app, daily(clip, day, "9"), day.timestamp() - 3600)
    with platform.db.transaction() as session:
        village = accounts.find_user(session, "village")
        session.get(User, village.id).role = "viewer"  # the owner's rights changed after the schedule was saved
        session.get(Schedule, village_schedule).created_by = village.id
    assert scheduler.run_due(platform, day.timestamp()) == 2
    with platform.db.transaction() as session:
        states = dict(session.execute(select(ScheduleRun.schedule_id, ScheduleRun.state)).tuples().all())
        reason = session.scalar(select(ScheduleRun.reason).where(ScheduleRun.schedule_id == village_schedule))
    assert states == {fine: "scheduled", village_schedule: "refused"}
    assert reason.startswith("forbidden")


def test_an_approved_village_schedule_plays_without_a_second_approval(tmp_path: Path, database_url: str) -> None:
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    app = make_app(tmp_path / "instance", database_url, MQTT_URL=nowhere, APPROVAL_REQUIRED="village_head")
    try:
        tokens = seed_county(app)
        platform = app.extensions["platform"]
        client = app.test_client()
        day = base()
        body = daily(clip_id(client, tokens["village_head"]), day, "7") | {"title": "每日普法"}
        sid = client.post("/api/v1/schedules", json=body, headers=auth(tokens["village_head"])).get_json()["id"]
        assert scheduler.run_due(platform, day.timestamp()) == 0  # waiting for its approval: nothing planned
        queue = client.get("/api/v1/approvals", headers=auth(tokens["operator"])).get_json()["items"]
        approve = client.post(f"/api/v1/approvals/{queue[0]['id']}/approve", json={}, headers=auth(tokens["operator"]))
        assert approve.status_code == 200, approve.get_json()
        assert scheduler.run_due(platform, day.timestamp()) == 1
        with platform.db.transaction() as session:
            run = session.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == sid)).one()
            assert run.state == "scheduled"
            assert session.get(Broadcast, run.broadcast_id).status == "sending"  # not pending a second approval
            states = session.scalars(select(Delivery.state).where(Delivery.broadcast_id == run.broadcast_id)).all()
            assert len(states) > 0
            assert set(states) == {"queued"}
    finally:
        app.extensions["platform"].close()
