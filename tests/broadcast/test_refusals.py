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
