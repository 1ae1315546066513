"""The generated corpus through the API: zero plays outside the area, zero drills on public speakers, no repeats."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from broadcast.models import Alert, Broadcast, Delivery, Speaker
from tests.alerts.corpus import generated_corpus


def test_the_generated_corpus_meets_the_targets(alert_app: Any, county: dict[str, Any]) -> None:
    client, token = alert_app.test_client(), county["tokens"]["warning_source"]
    cases = generated_corpus(datetime.now(UTC))
    answers = {}
    for case in cases:
        response = client.post(
            "/api/v1/alerts",
            data=case.data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/cap+xml"},
        )
        assert response.status_code in (202, 400), (case.name, response.get_json())
        answers[case.name] = response.get_json()
    speakers = county["speakers"]
    allowed = {
        "huangsha": set(speakers["huangsha"]),
        "huangsha_shape": set(speakers["huangsha"]),
        "dalu": set(speakers["dalu"]),
        "dalu_circle": set(speakers["dalu"]),
        "nowhere": set(),
    }
    with alert_app.extensions["platform"].db.transaction() as session:
        drill_speakers = set(session.scalars(select(Speaker.id).where(Speaker.test_speaker.is_(True))))
        plays: Counter[tuple[int, str]] = Counter()
        for case in cases:
            body = answers[case.name]
            if "alert_id" not in body or body["action"] == "duplicate":
                continue
            alert = session.get(Alert, body["alert_id"])
            assert alert is not None
            if alert.broadcast_id is None or alert.msg_type == "Cancel":
                continue
            reached = set(
                session.scalars(select(Delivery.speaker_id).where(Delivery.broadcast_id == alert.broadcast_id))
            )
            assert reached <= allowed[case.area], f"{case.name}: plays outside its area"
            if case.drill:
                assert reached <= drill_speakers, f"{case.name}: a drill on public speakers"
            for speaker in reached:
                plays[(alert.id, speaker)] += 1
        assert all(n == 1 for n in plays.values())
        # every duplicate was answered as one, and no message made two broadcasts
        assert all(answers[c.name]["action"] == "duplicate" for c in cases if c.name.startswith("again-"))
        per_alert = Counter(session.scalars(select(Alert.broadcast_id).where(Alert.broadcast_id.is_not(None))))
        assert all(n == 1 for n in per_alert.values())
        assert session.scalar(select(Broadcast.id).where(Broadcast.priority == "emergency")) is not None
    actions = {name: body.get("action") for name, body in answers.items()}
    assert actions["alert-5-nowhere-Actual"] == "held"
    assert actions["alert-6-dalu-Actual"] == "held"
    assert actions["alert-7-huangsha-System"] == "ignored"
    assert actions["update-0"] == "updated"
    assert actions["cancel-0"] == "cancelled"
    assert actions["expired"] == "ignored"
    assert all(answers[n]["error"]["code"].startswith("alert.") for n in answers if n.startswith(("hostile", "bad")))
