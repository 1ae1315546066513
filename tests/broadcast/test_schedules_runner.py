"""The scheduler job on both databases with a controllable clock: exactly once, misfire, playlists, edits, snapshots."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from broadcast import scheduler
from broadcast.lease import WorkerLease
from broadcast.models import Broadcast, Command, Delivery, Schedule, ScheduleRun
from broadcast.services import accounts, schedule_changes, schedule_push, schedules
from broadcast.services.quiet_hours import QuietHours
from broadcast.services.schedules import Limits
from tests.broadcast.conftest import HUANGSHA_VILLAGE, auth
from tests.broadcast.test_schedules_api import clip_id

SH = ZoneInfo("Asia/Shanghai")


def base() -> datetime:
    """Tomorrow 00:00 in Shanghai: a fixed day the tests move a fake clock around in."""
    return datetime.combine(datetime.now(SH).date() + timedelta(days=1), datetime.min.time(), SH)


def make(app: Any, data: dict[str, Any], now: float) -> int:
    platform = app.extensions["platform"]
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        item, _ = schedules.create(session, admin, platform.rules, Limits(), data, now=now)
        return item.id


def runs(app: Any, schedule_id: int) -> list[ScheduleRun]:
    with app.extensions["platform"].db.transaction() as session:
        return list(
            session.scalars(
                select(ScheduleRun)
                .where(ScheduleRun.schedule_id == schedule_id)
                .order_by(ScheduleRun.occurrence_at, ScheduleRun.id)
            )
        )


def daily(clip: int, day: datetime, hours: str = "7", **extra: Any) -> dict[str, Any]:
    return {
        "clip_id": clip,
        "targets": [HUANGSHA_VILLAGE],
        "rrule": f"FREQ=DAILY;BYHOUR={hours};BYMINUTE=0",
        "dtstart": day.strftime("%Y-%m-%dT00:00"),
        **extra,
    }


def test_occurrences_of_the_next_day_become_broadcasts_exactly_once(app: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ident = make(app, daily(clip, day, "7,19"), day.timestamp() - 3600)
    now = day.timestamp()  # 00:00: 07:00 and 19:00 today lie in the next 24 h, 07:00 tomorrow too late
    assert scheduler.run_due(app.extensions["platform"], now) == 2
    assert scheduler.run_due(app.extensions["platform"], now) == 0
    assert scheduler.run_due(app.extensions["platform"], now + 60) == 0  # topped up only once an hour
    made = runs(app, ident)
    assert [(datetime.fromtimestamp(r.occurrence_at, SH).hour, r.state) for r in made] == [
        (7, "scheduled"),
        (19, "scheduled"),
    ]
    with app.extensions["platform"].db.transaction() as session:
        items = [session.get(Broadcast, r.broadcast_id) for r in made]
        assert all(b.source == "schedule" for b in items)
        assert [b.start_at for b in items] == [r.occurrence_at for r in made]
        queued = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.broadcast_id == items[0].id))
        assert queued > 0
        plan = schedule_push.upcoming(session, app.extensions["platform"], now)
    # they ride the speakers' schedule snapshots
    assert all({f"b{items[0].id}", f"b{items[1].id}"} <= {i["item_id"] for i in entries} for entries in plan.values())
    assert scheduler.run_due(app.extensions["platform"], now + 8 * 3600) == 1  # 07:00 the next day joins the window
    assert len(runs(app, ident)) == 3


def test_two_schedulers_at_once_still_create_each_occurrence_once(app: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ids = [make(app, daily(clip, day, "7,9,11,13"), day.timestamp() - 3600) for _ in range(3)]
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(scheduler.run_due(app.extensions["platform"], day.timestamp()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 2
    assert sum(results) == 12
    with app.extensions["platform"].db.transaction() as session:
        for ident in ids:
            times = session.scalars(select(ScheduleRun.occurrence_at).where(ScheduleRun.schedule_id == ident)).all()
            assert len(times) == len(set(times)) == 4
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 12


def test_after_downtime_late_routine_plays_are_missed_and_coalesce(app: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ident = make(app, daily(clip, day, "7,9,11,13"), day.timestamp() + 6 * 3600)  # saved at 06:00
    back = day + timedelta(hours=13, minutes=2)  # the worker was down until 13:02
    # one coalesced miss (07, 09, 11), 13:00 (late, within the grace) and tomorrow's 07, 09, 11, 13
    assert scheduler.run_due(app.extensions["platform"], back.timestamp()) == 1 + 1 + 4
    made = runs(app, ident)
    missed = [r for r in made if r.state == "missed"]
    assert len(missed) == 1
    assert missed[0].missed_count == 3
    assert datetime.fromtimestamp(missed[0].occurrence_at, SH).hour == 7
    assert datetime.fromtimestamp(missed[0].last_missed_at, SH).hour == 11
    played = [r for r in made if r.state in ("scheduled", "sent")]
    assert [datetime.fromtimestamp(r.occurrence_at, SH).hour for r in played][:1] == [13]
    with app.extensions["platform"].db.transaction() as session:
        late = session.get(Broadcast, played[0].broadcast_id)
        assert late.start_at >= back.timestamp()  # plays now, not in the past
        history = schedules.describe(session, session.get(Schedule, ident), now=back.timestamp())["history"]
    assert {h["state"] for h in history} >= {"missed", "sent"}


def test_a_playlist_advances_one_episode_per_occurrence_then_ends(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    episodes = [clip_id(client, tokens["admin"], f"普法第{n}集。") for n in (1, 2)]
    playlist = client.post(
        "/api/v1/playlists", json={"title": "普法", "clip_ids": episodes}, headers=auth(tokens["admin"])
    ).get_json()["id"]
    day = base()
    ident = make(app, daily(None, day, "7") | {"clip_id": None, "playlist_id": playlist}, day.timestamp() - 60)
    for n in range(4):
        scheduler.run_due(app.extensions["platform"], (day + timedelta(days=n)).timestamp())
    made = runs(app, ident)
    assert [r.clip_id for r in made] == episodes
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Schedule, ident).state == "ended"


def test_edit_and_pause_cancel_planned_occurrences_and_stop_them_on_speakers(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ident = make(app, daily(clip, day, "7"), day.timestamp() - 60)
    now = day.timestamp()
    scheduler.run_due(platform, now)
    (old,) = runs(app, ident)
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        _, stops, _ = schedule_changes.update(
            session, admin, platform.rules, Limits(), ident, {"rrule": "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"}, now=now
        )
        assert [c.body["body"]["broadcast_id"] for c in stops] == [str(old.broadcast_id)]
    with platform.db.transaction() as session:
        assert session.get(ScheduleRun, old.id).state == "cancelled"
        reasons = set(session.scalars(select(Delivery.reason).where(Delivery.broadcast_id == old.broadcast_id)))
        assert reasons == {"cancelled:edited"}
        assert all(
            f"b{old.broadcast_id}" not in {i["item_id"] for i in e}
            for e in schedule_push.upcoming(session, platform, now).values()
        )
    scheduler.run_due(platform, now)
    fresh = [r for r in runs(app, ident) if r.state == "scheduled"]
    assert [datetime.fromtimestamp(r.occurrence_at, SH).hour for r in fresh] == [8]
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        schedule_changes.update(session, admin, platform.rules, Limits(), ident, {"paused": True}, now=now)
    assert scheduler.run_due(platform, now + 7200) == 0
    assert {r.state for r in runs(app, ident)} == {"cancelled"}


def test_imminent_occurrences_get_their_play_command(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    soon = datetime.now(SH).replace(second=0, microsecond=0) + timedelta(minutes=3)
    ident = make(
        app,
        {"clip_id": clip, "targets": [HUANGSHA_VILLAGE], "dtstart": soon.strftime("%Y-%m-%dT%H:%M")},
        time.time(),
    )
    scheduler.run_due(platform)
    (run,) = runs(app, ident)
    assert run.state == "sent"
    with platform.db.transaction() as session:
        plays = session.scalars(
            select(Command).where(Command.kind == "play", Command.broadcast_id == run.broadcast_id)
        ).all()
    assert len(plays) == 1


def test_refused_at_firing_is_recorded_not_raised(
    app: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ident = make(app, daily(clip, day, "3"), day.timestamp() - 60)
    # quiet hours set after the schedule was saved: the occurrence is refused when it fires, and recorded
    monkeypatch.setattr(
        platform, "rules", dataclasses.replace(platform.rules, quiet_hours=QuietHours.parse("02:00-05:00"))
    )
    assert scheduler.run_due(platform, day.timestamp()) == 1
    (run,) = runs(app, ident)
    assert run.state == "refused"
    assert run.reason.startswith("quiet_hours")


def test_only_the_worker_holding_the_lease_schedules(app: Any, tokens: dict[str, str]) -> None:
    platform = app.extensions["platform"]
    clip = clip_id(app.test_client(), tokens["admin"])
    day = base()
    ident = make(app, daily(clip, day, "7"), day.timestamp() - 60)
    active = WorkerLease.for_platform(platform)
    standby = WorkerLease.for_platform(platform)
    try:
        assert active.try_acquire()
        assert not standby.try_acquire()  # a file lock on SQLite, an advisory lock on PostgreSQL
        assert scheduler.run_due(platform, day.timestamp(), lease=standby) == 0
        assert runs(app, ident) == []
        assert scheduler.run_due(platform, day.timestamp(), lease=active) == 1
        active.release()
        assert standby.try_acquire()  # the standby takes over, and finds the work done
        assert scheduler.run_due(platform, day.timestamp(), lease=standby) == 0
        assert len(runs(app, ident)) == 1
    finally:
        active.release()
        standby.release()
