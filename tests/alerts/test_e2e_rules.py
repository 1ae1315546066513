"""The alert rules on real agents, in quiet hours: hostile XML, a drill, a polygon, a duplicate, an Update, a sensor.

Three agents: a drill speaker and a public speaker in 黄沙铺镇, and a public speaker in 大路乡. Every alert of the
test is for 黄沙铺镇 or a part of it, so the speaker in 大路乡 must stay silent throughout; what each agent really
played is read from its own timeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.alerts.triggers import sign
from broadcast.models import Alert, AuditEvent, Broadcast, Clip, Speaker
from tests.alerts.conftest import SENSOR_SECRET, TRIGGERS, place_speakers
from tests.alerts.corpus import HOSTILE, SENDER, AreaSpec, InfoSpec, cap, cap_time
from tests.broadcast.conftest import HUANGSHA, auth
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.e2e.procs import timeline, wait_for

pytestmark = pytest.mark.e2e
SECRET = "e2e-rules-cap-secret-0123456789ab"


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Server, dict[str, str]]]:
    """Broker, web tier, worker and three agents, with quiet hours in force on the server and the speakers."""
    hour = datetime.now(UTC).hour
    quiet = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"  # in force for the next hour at least
    server = server_stack(tmp_path, sqlite_url, ALERT_HMAC_SECRET=SECRET, ALERT_REPEAT=1, ALERT_TRIGGERS=TRIGGERS,
                          QUIET_HOURS=quiet, TIMEZONE="UTC")  # fmt: skip
    try:
        town = place_speakers(server.app)  # coordinates, and the first speaker of each township flagged for drills
        speakers = {"drill": town["huangsha"][0], "public": town["huangsha"][1], "outside": town["dalu"][1]}
        for speaker_id in speakers.values():
            server.agent(speaker_id)
        server.worker()
        wait_for(lambda: all(server.online(s) for s in speakers.values()), 90, "the three agents online")
        yield server, speakers
    finally:
        stop_stack(server)


def _post(server: Server, body: bytes) -> Any:
    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(SECRET, body)}
    return server.app.test_client().post("/api/v1/alerts", data=body, headers=headers)


def _read(server: Server, value: float, at: float) -> dict[str, Any]:
    body = json.dumps({"value": value, "at": at}).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(SENSOR_SECRET, body)}
    return server.app.test_client().post("/api/v1/triggers/reservoir-1", data=body, headers=headers).get_json()


def _started(server: Server, speaker: str) -> list[str]:
    """Broadcast ids this agent started, in order (each start of each play)."""
    return [e["broadcast_id"] for e in timeline(server.sink(speaker)) if e["event"] == "started"]


def _tone(server: Server, answer: dict[str, Any]) -> str:
    view = server.app.test_client().get(f"/api/v1/alerts/{answer['alert_id']}", headers=auth(server.token))
    return str(view.get_json()["tone_broadcast_id"])


def _count(server: Server, model: Any) -> int:
    with server.platform.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_alert_rules_hold_on_real_speakers(stack: tuple[Server, dict[str, str]]) -> None:
    server, spk = stack
    client = server.app.test_client()
    huangsha = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]

    # quiet hours are in force: a routine notice is refused ...
    clip = client.post("/api/v1/clips", json={"text": "例行广播。"}, headers=auth(server.token)).get_json()
    routine = client.post("/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]},
                          headers=auth(server.token))  # fmt: skip
    assert routine.get_json()["error"]["code"] == "quiet_hours"

    # hostile XML is refused with nothing stored but the rejection in the audit log
    for name, body in HOSTILE.items():
        answer = _post(server, body)
        assert answer.status_code == 400, (name, answer.get_json())
    assert (_count(server, Alert), _count(server, Broadcast)) == (0, 0)
    with server.platform.db.transaction() as session:
        rejected = session.scalar(select(func.count()).where(AuditEvent.action == "alert.rejected"))
    assert rejected == len(HOSTILE)

    # a drill goes to the drill speaker only, announced as one (and plays in quiet hours, as every alert below)
    drill = _post(server, cap(ident="RULES-DRILL", status="Exercise", infos=[InfoSpec(areas=huangsha)])).get_json()
    assert drill["action"] == "broadcast", drill
    with server.platform.db.transaction() as session:
        speech = session.get(Broadcast, drill["broadcast_id"])
        assert speech is not None
        assert session.get(Clip, speech.clip_id).text.startswith("演练：")  # type: ignore[union-attr]
    wait_for(lambda: str(drill["broadcast_id"]) in _started(server, spk["drill"]), 60, "the drill's speech")

    # a polygon around the public speaker alone reaches it, not its neighbour 100 m away
    with server.platform.db.transaction() as session:
        public = session.get(Speaker, spk["public"])
        assert public is not None
        lat, lon = public.latitude, public.longitude
    assert lat is not None
    assert lon is not None
    d = 0.0004
    ring = f"{lat - d},{lon - d} {lat + d},{lon - d} {lat + d},{lon + d} {lat - d},{lon + d} {lat - d},{lon - d}"
    shape = [AreaSpec(desc="黄沙铺镇一角", geocodes=[], polygons=[ring])]
    sent = datetime.now(UTC)
    first = cap(ident="RULES-POLY-1", sent=sent, infos=[InfoSpec(areas=shape)])
    poly = _post(server, first).get_json()
    assert poly["action"] == "broadcast", poly
    wait_for(lambda: str(poly["broadcast_id"]) in _started(server, spk["public"]), 60, "the polygon alert's speech")

    # the same message again (same sender, identifier and sent) is a duplicate: nothing new is made or played
    broadcasts = _count(server, Broadcast)
    again = _post(server, first).get_json()
    assert again["action"] == "duplicate"
    assert "broadcast_id" not in again or again["broadcast_id"] in (None, poly["broadcast_id"])
    assert _count(server, Broadcast) == broadcasts

    # an Update replaces the speech without a second tone
    ref = f"{SENDER},RULES-POLY-1,{cap_time(sent)}"
    update = _post(server, cap(ident="RULES-POLY-2", msg_type="Update", references=ref,
                               infos=[InfoSpec(areas=shape, headline="暴雨橙色预警信号更新")])).get_json()  # fmt: skip
    assert update["action"] == "updated", update
    wait_for(lambda: str(update["broadcast_id"]) in _started(server, spk["public"]), 60, "the updated speech")

    # a reservoir gauge crossing its threshold twice within a minute plays once
    now = time.time()
    answers = [_read(server, value, now - 30 + n) for n, value in enumerate((84.0, 85.5, 84.2, 85.9))]
    assert [a["action"] for a in answers] == ["ignored", "broadcast", "ignored", "ignored"], answers
    sensor = answers[1]
    for who in ("drill", "public"):
        wait_for(lambda who=who: str(sensor["broadcast_id"]) in _started(server, spk[who]), 60, "the gauge's alert")

    # what each speaker really played
    drill_speech, poly_speech, update_speech, sensor_speech = (
        str(a["broadcast_id"]) for a in (drill, poly, update, sensor)
    )
    poly_tone, sensor_tone = _tone(server, poly), _tone(server, sensor)
    public, drill_only, outside = (_started(server, spk[k]) for k in ("public", "drill", "outside"))
    assert outside == [], "nothing plays outside the area"
    assert drill_speech not in public, "no drill on a public speaker"
    assert poly_speech not in drill_only, "the polygon's neighbour stays silent"
    assert update_speech not in drill_only
    assert public.count(poly_tone) == 1, "the Update sounds no second tone"
    for played in (public, drill_only):
        assert len(played) == len(set(played)), f"every broadcast played once: {played}"
    assert sensor_tone in public
    assert sensor_speech in drill_only
