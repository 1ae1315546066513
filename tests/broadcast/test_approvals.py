"""Approvals (先审后播): a village head's broadcast or schedule waits for an operator above it, on both databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.models import Approval, AuditEvent, Broadcast, Command, Delivery, Schedule
from broadcast.services import broadcasts, receipts, schedule_push
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, auth, seed_county
from tests.conftest import free_port, make_app


def _app(tmp_path: Path, database_url: str, policy: str) -> Any:
    return make_app(
        tmp_path / "instance", database_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", APPROVAL_REQUIRED=policy
    )


@pytest.fixture
def gated(tmp_path: Path, database_url: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """The demo county where village heads must wait for approval; no broker reachable (commands wait)."""
    app = _app(tmp_path, database_url, "village_head")
    tokens = seed_county(app)
    with app.extensions["platform"].db.transaction() as session:
        from broadcast.services import accounts

        other = accounts.create_user(session, "dalu-op", "dalu-password-1", "operator", DALU)
        tokens["dalu"] = accounts.create_token(session, other)
    yield app, tokens
    app.extensions["platform"].close()


def _clip(client: Any, token: str) -> int:
    made = client.post("/api/v1/clips", json={"text": "村委会通知：明早八点打扫卫生。"}, headers=auth(token))
    assert made.status_code == 201, made.get_json()
    return int(made.get_json()["id"])


def _broadcast(client: Any, token: str, **fields: Any) -> dict[str, Any]:
    body = {"clip_id": _clip(client, token), "targets": [HUANGSHA_VILLAGE], **fields}
    created = client.post("/api/v1/broadcasts", json=body, headers=auth(token))
    assert created.status_code == 201, created.get_json()
    return created.get_json()


def _count(app: Any, query: Any) -> int:
    with app.extensions["platform"].db.transaction() as session:
        return int(session.scalar(query) or 0)


def _actions(app: Any) -> list[str]:
    with app.extensions["platform"].db.transaction() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _pending(client: Any, token: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/approvals", headers=auth(token))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def test_without_the_setting_a_village_head_broadcasts_at_once(tmp_path: Path, database_url: str) -> None:
    app = _app(tmp_path, database_url, "")
    try:
        tokens = seed_county(app)
        client = app.test_client()
        created = _broadcast(client, tokens["village_head"])
        assert created["status"] != "pending_approval"
        assert _count(app, select(func.count()).select_from(Command).where(Command.broadcast_id == created["id"])) == 1
        assert _pending(client, tokens["operator"]) == []
    finally:
        app.extensions["platform"].close()


def test_a_village_head_broadcast_waits_until_the_operator_approves(gated: tuple[Any, dict[str, str]]) -> None:
    app, tokens = gated
    client = app.test_client()
    created = _broadcast(client, tokens["village_head"])
    bid = created["id"]
    assert created["status"] == "pending_approval"
    assert _count(app, select(func.count()).select_from(Command).where(Command.broadcast_id == bid)) == 0
    states = {
        d["state"]
        for d in client.get(f"/api/v1/broadcasts/{bid}", headers=auth(tokens["admin"])).get_json()["deliveries"]
    }
    assert states == {"held"}

    mine = _pending(client, tokens["village_head"])
    assert [(a["kind"], a["object_id"], a["may_decide"]) for a in mine] == [("broadcast", bid, False)]
    queue = _pending(client, tokens["operator"])
    assert [(a["object_id"], a["submitted_by"], a["may_decide"]) for a in queue] == [(bid, "village", True)]
    approval_id = queue[0]["id"]
    assert _pending(client, tokens["dalu"]) == []  # another township's operator never sees it

    for who, status, code in (
        ("village_head", 403, "forbidden"),  # the author cannot approve their own
        ("viewer", 403, "forbidden"),
        ("dalu", 404, "not_found"),
    ):
        refused = client.post(f"/api/v1/approvals/{approval_id}/approve", json={}, headers=auth(tokens[who]))
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (status, code), who
    assert _count(app, select(func.count()).select_from(Command).where(Command.broadcast_id == bid)) == 0

    approved = client.post(
        f"/api/v1/approvals/{approval_id}/approve", json={"comment": "同意"}, headers=auth(tokens["operator"])
    )
    assert approved.status_code == 200, approved.get_json()
    assert (approved.get_json()["state"], approved.get_json()["decided_by"]) == ("approved", "operator")
    assert _count(app, select(func.count()).select_from(Command).where(Command.broadcast_id == bid)) == 1
    shown = client.get(f"/api/v1/broadcasts/{bid}", headers=auth(tokens["admin"])).get_json()
    assert shown["status"] in ("sending", "scheduled", "playing")
    assert {d["state"] for d in shown["deliveries"]} == {"queued"}  # the broker is down: the worker sends it
    again = client.post(f"/api/v1/approvals/{approval_id}/approve", json={}, headers=auth(tokens["operator"]))
    assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_decided")
    actions = _actions(app)
    assert actions.index("approval.submit") < actions.index("approval.approve")
    assert _pending(client, tokens["operator"]) == []


def test_rejecting_needs_a_comment_and_ends_the_broadcast(gated: tuple[Any, dict[str, str]]) -> None:
    app, tokens = gated
    client = app.test_client()
    bid = _broadcast(client, tokens["village_head"])["id"]
    approval_id = _pending(client, tokens["operator"])[0]["id"]
    for body in ({}, {"comment": "   "}, {"comment": None}):
        refused = client.post(f"/api/v1/approvals/{approval_id}/reject", json=body, headers=auth(tokens["operator"]))
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "comment_required"), body
        assert "意见" in refused.get_json()["error"]["message"]
    assert _pending(client, tokens["operator"])[0]["state"] == "pending"  # the refusals changed nothing

    rejected = client.post(
        f"/api/v1/approvals/{approval_id}/reject", json={"comment": "内容有误，请改正"}, headers=auth(tokens["admin"])
    )
    assert rejected.status_code == 200, rejected.get_json()
    assert (rejected.get_json()["state"], rejected.get_json()["comment"]) == ("rejected", "内容有误，请改正")
    shown = client.get(f"/api/v1/broadcasts/{bid}", headers=auth(tokens["village_head"])).get_json()
    assert (shown["status"], shown["deliveries"]) == ("rejected", [])
    assert _count(app, select(func.count()).select_from(Command).where(Command.broadcast_id == bid)) == 0
    with app.extensions["platform"].db.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "approval.reject")).one()
        assert (event.actor, event.detail["comment"]) == ("admin", "内容有误，请改正")
    decided = client.get("/api/v1/approvals?state=decided", headers=auth(tokens["village_head"])).get_json()["items"]
    assert [a["state"] for a in decided] == ["rejected"]


def test_a_waiting_broadcast_is_never_sent_expired_or_pushed_ahead(gated: tuple[Any, dict[str, str]]) -> None:
    app, tokens = gated
    client = app.test_client()
    platform = app.extensions["platform"]
    soon = time.time() + 3600
    bid = _broadcast(client, tokens["village_head"], start_at=soon)["id"]
    with platform.db.transaction() as session:
        assert receipts.expire_deliveries(session, soon + 10**6) == 0
        item = session.get(Broadcast, bid)
        assert item is not None
        assert broadcasts.refresh_status(session, item, soon + 10**6) == "pending_approval"
        assert schedule_push.upcoming(session, platform, time.time()) == {}
    with platform.db.transaction() as session:
        assert {d.state for d in session.scalars(select(Delivery).where(Delivery.broadcast_id == bid))} == {"held"}


def test_an_approval_after_the_start_time_gives_a_fresh_start(gated: tuple[Any, dict[str, str]]) -> None:
    app, tokens = gated
    client = app.test_client()
    platform = app.extensions["platform"]
    created = _broadcast(client, tokens["village_head"])
    window = None
    with platform.db.transaction() as session:
        item = session.get(Broadcast, created["id"])
        assert item is not None
        item.start_at -= 600  # it waited ten minutes for its approver
        item.expires_at -= 600
        window = item.expires_at - item.start_at
    before = time.time()
    approval_id = _pending(client, tokens["operator"])[0]["id"]
    client.post(f"/api/v1/approvals/{approval_id}/approve", json={}, headers=auth(tokens["operator"]))
    with platform.db.transaction() as session:
        item = session.get(Broadcast, created["id"])
        assert item is not None
        assert item.start_at >= before
        assert item.expires_at - item.start_at == pytest.approx(window)
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "approval.approve")).one()
        assert event.detail["moved_s"] > 590


def test_emergencies_never_wait_and_a_region_rule_picks_whom(tmp_path: Path, database_url: str) -> None:
    app = _app(tmp_path, database_url, f"operator@{HUANGSHA}")
    try:
        tokens = seed_county(app)
        client = app.test_client()
        assert _broadcast(client, tokens["village_head"])["status"] != "pending_approval"  # not named: no wait
        assert _broadcast(client, tokens["operator"], priority="emergency")["status"] != "pending_approval"
        waiting = _broadcast(client, tokens["operator"])
        assert waiting["status"] == "pending_approval"
        assert _pending(client, tokens["operator"])[0]["may_decide"] is False  # never one's own
        queue = _pending(client, tokens["admin"])
        assert [a["object_id"] for a in queue] == [waiting["id"]]
    finally:
        app.extensions["platform"].close()


def test_a_village_head_schedule_is_saved_paused_until_approved(gated: tuple[Any, dict[str, str]]) -> None:
    app, tokens = gated
    client = app.test_client()
    body = {
        "clip_id": _clip(client, tokens["village_head"]),
        "targets": [HUANGSHA_VILLAGE],
        "rrule": "FREQ=DAILY",
        "dtstart": "2030-01-01T08:00",
        "title": "每日普法",
    }
    created = client.post("/api/v1/schedules", json=body, headers=auth(tokens["village_head"]))
    assert created.status_code == 201, created.get_json()
    sid = created.get_json()["id"]
    assert created.get_json()["state"] == "paused"
    # The author resuming it only keeps it waiting (one request in the queue, not two).
    resumed = client.patch(f"/api/v1/schedules/{sid}", json={"paused": False}, headers=auth(tokens["village_head"]))
    assert resumed.status_code == 200, resumed.get_json()
    assert resumed.get_json()["state"] == "paused"
    assert _count(app, select(func.count()).select_from(Approval).where(Approval.object_id == sid)) == 1
    # Nobody else makes it play except by approving it.
    bypass = client.patch(f"/api/v1/schedules/{sid}", json={"paused": False}, headers=auth(tokens["operator"]))
    assert (bypass.status_code, bypass.get_json()["error"]["code"]) == (409, "awaiting_approval")
    queue = _pending(client, tokens["operator"])
    assert [(a["kind"], a["object_id"], a["summary"]) for a in queue] == [("schedule", sid, "每日普法")]
    approved = client.post(f"/api/v1/approvals/{queue[0]['id']}/approve", json={}, headers=auth(tokens["operator"]))
    assert approved.status_code == 200, approved.get_json()
    with app.extensions["platform"].db.transaction() as session:
        schedule = session.get(Schedule, sid)
        assert schedule is not None
        assert schedule.state == "active"
    # An edit by the village head later makes it wait again.
    edited = client.patch(f"/api/v1/schedules/{sid}", json={"title": "每周普法"}, headers=auth(tokens["village_head"]))
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["state"] == "paused"
    assert len(_pending(client, tokens["operator"])) == 1


def test_approvers_see_a_badge_on_every_console_page(gated: tuple[Any, dict[str, str]]) -> None:
    from tests.broadcast.test_console import log_in

    app, tokens = gated
    api = app.test_client()
    operator = app.test_client()
    log_in(operator, "operator", "operator-password-1")
    assert 'id="approvals-badge"' not in operator.get("/speakers").get_data(as_text=True)  # nothing waits yet
    _broadcast(api, tokens["village_head"])
    for page in ("/speakers", "/broadcasts", "/approvals"):
        html = operator.get(page).get_data(as_text=True)
        assert 'id="approvals-badge">1<' in html, page
    village = app.test_client()
    log_in(village, "village", "village-password-1")
    html = village.get("/approvals").get_data(as_text=True)
    assert "approvals-badge" not in html
    assert "等待上级审批" in html


def test_two_approvers_at_once_decide_once(gated: tuple[Any, dict[str, str]]) -> None:
    from broadcast.errors import BroadcastError
    from broadcast.models import User
    from broadcast.services import approvals

    app, tokens = gated
    client = app.test_client()
    _broadcast(client, tokens["village_head"])
    approval_id = _pending(client, tokens["operator"])[0]["id"]
    database = app.extensions["platform"].db
    with database.transaction() as late:  # this approver read the request while it was still pending...
        stale = late.get(Approval, approval_id)
        assert stale is not None
        assert stale.state == "pending"
        answer = client.post(f"/api/v1/approvals/{approval_id}/approve", json={}, headers=auth(tokens["admin"]))
        assert answer.status_code == 200  # ...and the other approver decided first
        operator = late.scalars(select(User).where(User.username == "operator")).one()
        with pytest.raises(BroadcastError) as refused:
            approvals._decide(late, stale, operator, "rejected", "晚了")
        assert refused.value.code == "already_decided"
    with database.transaction() as session:
        decided = session.get(Approval, approval_id)
        assert decided is not None
        assert (decided.state, decided.comment) == ("approved", None)
