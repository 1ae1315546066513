"""Sensor triggers: rules, hysteresis, signed readings, and POST /api/v1/triggers/<source> on both databases."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.alerts import AlertError
from broadcast.alerts.triggers import parse_reading, parse_rules, sign, signature_ok
from broadcast.models import Alert, AuditEvent, Broadcast, Delivery
from tests.alerts.conftest import SENSOR_SECRET, TRIGGER_RULE, TRIGGERS
from tests.broadcast.conftest import auth


def test_signatures() -> None:
    body = b'{"value": 1}'
    assert signature_ok("s" * 16, body, sign("s" * 16, body))
    assert not signature_ok("s" * 16, body, sign("t" * 16, body))
    assert not signature_ok("s" * 16, body + b" ", sign("s" * 16, body))
    assert not signature_ok("", body, sign("", body))  # no secret configured: nothing is accepted
    assert not signature_ok("s" * 16, body, None)


def test_hysteresis_fires_once_per_crossing() -> None:
    rule = parse_rules(TRIGGERS)["reservoir-1"]
    active, fired = False, []
    # rises past 85, flaps around it (84.5 is inside the 1 m band), falls to 83.9 (re-armed), rises again
    for value in (80, 84.9, 85.0, 84.5, 85.3, 84.2, 86, 83.9, 84.5, 85.1):
        fire, active = rule.step(active, value)
        fired.append(fire)
    assert fired == [False, False, True, False, False, False, False, False, False, True]
    below = parse_rules(json.dumps({"dry": {**TRIGGER_RULE, "direction": "below", "threshold": 10}}))["dry"]
    assert below.step(False, 9.5) == (True, True)
    assert below.step(True, 10.5) == (False, True)
    assert below.step(True, 11.5) == (False, False)


@pytest.mark.parametrize(
    "change",
    [
        {"threshold": "high"},
        {"targets": []},
        {"secret": "short"},
        {"direction": "sideways"},
        {"level": "purple"},
        {"hysteresis": -1},
        {"text": "{nonsense}"},
        {"clip_id": "x"},
    ],
)
def test_bad_rules_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(AlertError) as caught:
        parse_rules(json.dumps({"gauge": {**TRIGGER_RULE, **change}}))
    assert caught.value.code == "alert.invalid_triggers"
    assert parse_rules("") == {}


def test_readings() -> None:
    assert parse_reading(b'{"value": 85.2, "at": 1700000000}').value == 85.2
    assert parse_reading(b'{"value": 1, "at": "2026-06-01T08:00:00+08:00"}').at == 1780272000.0
    for bad in (b"[]", b'{"value": "x", "at": 1}', b'{"value": 1}', b'{"value": 1, "at": "2026-06-01T08:00:00"}'):
        with pytest.raises(AlertError):
            parse_reading(bad)


def _read(client: Any, value: float, at: float, secret: str = SENSOR_SECRET, source: str = "reservoir-1") -> Any:
    body = json.dumps({"value": value, "at": at}).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(secret, body)}
    return client.post(f"/api/v1/triggers/{source}", data=body, headers=headers)


def test_a_flapping_gauge_plays_once(alert_app: Any, county: dict[str, Any]) -> None:
    client, now = alert_app.test_client(), time.time()
    assert _read(client, 86, now, secret="wrong-secret-000000").status_code == 401
    assert _read(client, 86, now, source="unknown").status_code == 404
    assert _read(client, 86, now - 3600).json["error"]["code"] == "alert.stale_reading"
    answers = [_read(client, v, now - 60 + n).json for n, v in enumerate((84, 85.5, 84.6, 85.8, 84.1, 86))]
    assert [a["action"] for a in answers] == ["ignored", "broadcast", "ignored", "ignored", "ignored", "ignored"]
    assert answers[2]["reason"] == "active"
    assert _read(client, 90, now - 60).json["reason"] == "not_newer"  # an old reading replayed changes nothing
    with alert_app.extensions["platform"].db.transaction() as session:
        alerts = list(session.scalars(select(Alert)))
        assert len(alerts) == 1
        assert alerts[0].text == "黄沙水库监测值85.5米，已达到85米的警戒值，请注意安全，按照指引转移。"
        item = session.get(Broadcast, answers[1]["broadcast_id"])
        assert item is not None
        assert item.priority == "emergency"
        reached = set(session.scalars(select(Delivery.speaker_id).where(Delivery.broadcast_id == item.id)))
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.trigger_refused")).all()
    assert reached == set(county["speakers"]["huangsha"])
    assert len(refused) == 1
    # falling past the band re-arms it; the next crossing plays again
    assert _read(client, 83.5, now - 10).json["reason"] == "below_threshold"
    assert _read(client, 85.2, now - 5).json["action"] == "broadcast"


def test_the_emergency_button_needs_a_typed_confirmation(alert_app: Any, county: dict[str, Any]) -> None:
    client, tokens = alert_app.test_client(), county["tokens"]
    body = {"text": "大坝出现险情，请黄沙铺镇群众立即向高处转移。", "targets": ["421224104000"]}
    url = "/api/v1/alerts/manual"
    assert client.post(url, json=body, headers=auth(tokens["admin"])).json["error"]["code"] == (
        "alert.confirmation_required"
    )
    assert (
        client.post(url, json={**body, "confirm": "确认播发"}, headers=auth(tokens["village_head"])).status_code == 403
    )
    with alert_app.extensions["platform"].db.transaction() as session:
        assert session.scalars(select(Alert)).all() == []
    sent = client.post(url, json={**body, "confirm": "确认播发"}, headers=auth(tokens["operator"]))
    assert sent.status_code == 202, sent.json
    assert sent.json["action"] == "broadcast"
    view = client.get(f"/api/v1/alerts/{sent.json['alert_id']}", headers=auth(tokens["admin"])).json
    assert view["coverage"]["speakers"] == len(county["speakers"]["huangsha"])
    assert view["decisions"][-1]["actor"] == "operator"
