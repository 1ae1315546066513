"""A warning service's token posts alerts; it can never broadcast on its own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from broadcast.models import Broadcast
from tests.broadcast.conftest import HUANGSHA, auth
from tests.broadcast.test_api import make_clip


def test_a_warning_source_token_cannot_broadcast(alert_app: Any, county: dict[str, Any]) -> None:
    client = alert_app.test_client()
    clip = make_clip(client, county["tokens"]["admin"])
    # positive path first: the admin may broadcast this clip
    ok = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip["id"], "targets": [HUANGSHA]},
        headers=auth(county["tokens"]["admin"]),
    )
    assert ok.status_code == 201
    refused = client.post(
        "/api/v1/broadcasts",
        json={"clip_id": clip["id"], "targets": [HUANGSHA], "priority": "emergency"},
        headers=auth(county["tokens"]["warning_source"]),
    )
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    with alert_app.extensions["platform"].db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 1
