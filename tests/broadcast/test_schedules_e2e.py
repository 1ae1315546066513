"""Schedules on real processes: saved seconds before it plays, it starts on the second; an edit made while a
speaker is offline wins when it is back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcast import scheduler
from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import http, timeline, wait_for
from tests.e2e.test_schedule_offline import _barrier

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SPEAKER = "spk-42122410420101-1"
VILLAGE = "421224104201"
SH = ZoneInfo("Asia/Shanghai")


def _local(at: float) -> str:
    return datetime.fromtimestamp(at, SH).strftime("%Y-%m-%dT%H:%M:%S")


def _synced_since(deployment: Deployment, since: float) -> bool:
    from broadcast.models import Speaker

    with deployment.platform.db.transaction() as session:
        synced = session.get(Speaker, SPEAKER).schedule_synced_at
    return synced is not None and synced >= datetime.fromtimestamp(since, UTC)


def _planned(deployment: Deployment, schedule_id: int) -> list[int]:
    from sqlalchemy import select

    from broadcast.models import ScheduleRun

    with deployment.platform.db.transaction() as session:
        query = select(ScheduleRun.broadcast_id).where(
            ScheduleRun.schedule_id == schedule_id, ScheduleRun.state.in_(("scheduled", "sent"))
        )
        return [b for b in session.scalars(query) if b is not None]


def _save(deployment: Deployment, at: float) -> dict:
    """A one-off schedule of a new 普法 clip for the village at `at`, saved through the API."""
    clip = http("POST", deployment.base + "/api/v1/clips", deployment.token, {"text": "普法讲堂。"})[1]
    body = {"clip_id": clip["id"], "targets": [VILLAGE], "dtstart": _local(at)}
    status, created = http("POST", deployment.base + "/api/v1/schedules", deployment.token, body)
    assert status == 201, created
    return created


def test_a_schedule_saved_seconds_before_its_time_starts_on_the_second(tmp_path: Path) -> None:
    """The worker alone plans it (nothing here calls run_due): it polls every RUN_EVERY_S, not every 15 s."""
    deployment = prepare(tmp_path, [SPEAKER])
    try:
        deployment.start_server()
        deployment.start_agent(SPEAKER, "agent1")
        deployment.wait_online(SPEAKER)
        at = float(int(time.time()) + 6)
        created = _save(deployment, at)
        assert time.time() < at - 3, "saved too late for this test to mean much"
        sink = deployment.sink(SPEAKER)
        started = wait_for(
            lambda: [e for e in timeline(sink) if e["event"] == "started"], 60, "the occurrence to start"
        )
        assert started[0]["broadcast_id"] in {str(b) for b in _planned(deployment, created["id"])}
        assert abs(started[0]["at"] - at) < 0.5, f"started {started[0]['at'] - at:+.3f} s from its second"
    finally:
        deployment.stop()


def test_an_edit_made_while_a_speaker_is_offline_wins_when_it_is_back(tmp_path: Path) -> None:
    deployment = prepare(tmp_path, [SPEAKER], SCHEDULE_PUSH_S="1", SCHEDULE_MIN_LEAD_S="3")
    try:
        deployment.start_server()
        agent = deployment.start_agent(SPEAKER, "agent1")
        deployment.wait_online(SPEAKER)
        first_at = float(int(time.time()) + 60)  # whole seconds: dtstart has no fractions to lose
        created = _save(deployment, first_at)
        planned_at = time.time()
        scheduler.run_due(deployment.platform)  # the worker runs it too, every second: whichever comes first
        (old,) = wait_for(lambda: _planned(deployment, created["id"]), 30, "the first occurrence planned")
        wait_for(lambda: _synced_since(deployment, planned_at), 30, "the snapshot with the first plan")
        agent.stop()
        wait_for(lambda: not deployment.online(SPEAKER), 60, "the speaker to be seen offline")
        second_at = first_at + 20
        status, edited = http(
            "PATCH",
            f"{deployment.base}/api/v1/schedules/{created['id']}",
            deployment.token,
            {"dtstart": _local(second_at)},
        )
        assert status == 200, edited
        scheduler.run_due(deployment.platform)
        (new,) = wait_for(lambda: [b for b in _planned(deployment, created["id"]) if b != old], 30, "the new plan")
        deployment.start_agent(SPEAKER, "agent2")  # same device state: it still holds the first plan
        deployment.wait_online(SPEAKER)
        assert time.time() < first_at - 5, "the speaker must be back before the old time for this test to mean much"
        sink = deployment.sink(SPEAKER)
        wait_for(
            lambda: any(e["event"] == "finished" and e["broadcast_id"] == str(new) for e in timeline(sink)),
            120,
            "the edited occurrence to play",
        )
        barrier = _barrier(deployment)  # a second copy of the new occurrence would have started before this
        started = [e for e in timeline(sink) if e["event"] == "started"]
        assert [e["broadcast_id"] for e in started] == [str(new), barrier]
        assert abs(started[0]["at"] - second_at) < 0.5, f"started {started[0]['at'] - second_at:+.3f} s from its second"
    finally:
        deployment.stop()
