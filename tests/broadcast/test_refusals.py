"""Refused attempts are in the audit trail: who tried what, from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from broadcast.models import AuditEvent, Broadcast
from tests.broadcast.conftest import DALU, auth
from tests.broadcast.test_api import make_clip


def test_a_refused_broadcast_is_audited(client: Any, tokens: dict[str, str]) -> None:
    clip = make_clip(client, tokens["admin"])
    response = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip["id"], "targets": [DALU]},
        headers=auth(tokens["village_head"]),
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert response.status_code == 403
    with client.application.extensions["platform"].db.transaction() as session:
        assert session.scalars(select(Broadcast)).all() == []
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "access.denied")).all()
        assert event.actor == "village"
        assert event.address == "198.51.100.7"
        assert event.detail == {"method": "POST", "path": "/api/v1/broadcasts", "code": "forbidden"}
        assert event.entry_hash is not None  # chained like every other entry


def test_a_permitted_request_leaves_no_refusal(client: Any, tokens: dict[str, str]) -> None:
    assert client.get("/api/v1/regions", headers=auth(tokens["village_head"])).status_code == 200
    with client.application.extensions["platform"].db.transaction() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "access.denied")).all() == []


def test_a_refusal_by_a_token_caller_without_an_orm_user_names_it_by_id(app: Any) -> None:
    """On a cached API read g.user is a light Caller (no username): the refusal is still audited, by user id."""
    from flask import g

    from broadcast.services.broadcasts import Caller
    from broadcast.web.errors import _record_refusal

    with app.test_request_context("/api/v1/speakers"):
        g.user = Caller(7, "viewer", None)
        _record_refusal("forbidden")
    with app.extensions["platform"].db.transaction() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "access.denied")).all()
    assert [e.actor for e in refused] == ["user#7"]
