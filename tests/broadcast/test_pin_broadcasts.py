"""Pins of creating a broadcast: who may send what, where and when, and what is recorded; who sees it, its status."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.models import Approval, AuditEvent, Broadcast, Clip, Delivery, Speaker, User
from broadcast.services import broadcasts, regions
from broadcast.services.broadcasts import Caller, Rules
from broadcast.services.quiet_hours import QuietHours
from tests.broadcast.conftest import database_with_regions

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 23, 12, 0, tzinfo=SHANGHAI).timestamp()  # a Monday noon in the county
COUNTY, TOWN, OTHER_TOWN = "100000", "100100", "100200"
VILLAGE, OTHER_VILLAGE = "100101", "100201"
GRID, GRID_B, OTHER_GRID = "1001010", "1001011", "1002010"
SHA = "cd" * 32
CLIP, UNTITLED_CLIP = 1, 2
ADMIN, OPERATOR, VILLAGE_HEAD, VIEWER, SOURCE, OTHER_OPERATOR, OTHER_HEAD = 1, 2, 3, 4, 5, 6, 7
RULES = Rules(
    quiet_hours=QuietHours.parse("22:00-06:00"),
    timezone=SHANGHAI,
    start_lead_s=3.0,
    ttl_s=600.0,
    default_volume=70,
    max_repeat=5,
)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A small county: two townships, three grids with speakers, users of every role and two clips."""
    database = database_with_regions(
        database_url,
        (
            (COUNTY, "县", "county", None),
            (TOWN, "甲镇", "township", COUNTY),
            (OTHER_TOWN, "乙镇", "township", COUNTY),
            (VILLAGE, "甲村", "village", TOWN),
            (OTHER_VILLAGE, "乙村", "village", OTHER_TOWN),
            (GRID, "甲一网格", "grid", VILLAGE),
            (GRID_B, "甲二网格", "grid", VILLAGE),
            (OTHER_GRID, "乙一网格", "grid", OTHER_VILLAGE),
        ),
    )
    with database.transaction() as session:
        for speaker_id, grid, enabled in (
            ("s1", GRID, True), ("s2", GRID, True), ("s3", GRID_B, True), ("s-off", GRID_B, False),
            ("s4", OTHER_GRID, True),
        ):  # fmt: skip
            session.add(Speaker(id=speaker_id, name=speaker_id, grid_code=grid, enabled=enabled))
        for ident, name, role, region in (
            (ADMIN, "admin", "admin", None),
            (OPERATOR, "operator", "operator", TOWN),
            (VILLAGE_HEAD, "head", "village_head", VILLAGE),
            (VIEWER, "viewer", "viewer", TOWN),
            (SOURCE, "cap", "warning_source", None),
            (OTHER_OPERATOR, "other", "operator", OTHER_TOWN),
            (OTHER_HEAD, "other-head", "village_head", OTHER_VILLAGE),
        ):
            session.add(User(id=ident, username=name, password_hash="x", role=role, region_code=region))
        clip: dict[str, Any] = {"sha256": SHA, "format": "opus", "mime": "audio/ogg", "size_bytes": 1000}
        clip |= {"duration_ms": 4000, "loudness_lufs": -16.0, "true_peak_dbtp": -1.5, "source": "tts"}
        session.add_all([Clip(id=CLIP, title="防火通知", **clip), Clip(id=UNTITLED_CLIP, title=None, **clip)])
    yield database
    database.dispose()


def who(session: Any, ident: int) -> User:
    """A stored user by id."""
    user = session.get(User, ident)
    assert user is not None
    return user


def send(session: Any, user: int, targets: Any = (GRID,), rules: Rules = RULES, **fields: Any) -> Broadcast:
    """Create a broadcast of the titled clip at noon (fields override)."""
    values: dict[str, Any] = {"clip_id": CLIP, "now": NOON}
    values.update(fields)
    chosen = list(targets) if isinstance(targets, tuple) else targets
    return broadcasts.create(session, who(session, user), rules, targets=chosen, **values)


def refusal(db: Database, user: int = ADMIN, **fields: Any) -> BroadcastError:
    """The error creating this broadcast raises (nothing is recorded)."""
    with db.transaction() as session:
        before = session.scalars(select(Broadcast.id)).all()
        with pytest.raises(BroadcastError) as caught:
            send(session, user, **fields)
        assert session.scalars(select(Broadcast.id)).all() == before
    return caught.value


def audit_rows(session: Any, action: str) -> list[AuditEvent]:
    """Audit events of one action, oldest first."""
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- start times --


def test_no_start_means_now() -> None:
    """An absent or empty start is "now" (None)."""
    assert broadcasts.parse_start(None, SHANGHAI, NOON) is None
    assert broadcasts.parse_start("", SHANGHAI, NOON) is None


def test_unix_seconds_are_taken_as_they_are() -> None:
    """A number is unix seconds, returned as a float."""
    assert broadcasts.parse_start(1_800_000_000, SHANGHAI, NOON) == 1_800_000_000.0
    assert isinstance(broadcasts.parse_start(1_800_000_000, SHANGHAI, NOON), float)
    assert broadcasts.parse_start(1_800_000_000.5, SHANGHAI, NOON) == 1_800_000_000.5
    assert broadcasts.parse_start(0, SHANGHAI, NOON) == 0.0


def test_iso_times_without_an_offset_are_local_and_with_one_are_exact() -> None:
    """ISO 8601 without an offset is the deployment's local time; with an offset it is that instant."""
    local = datetime(2026, 11, 23, 14, 30, tzinfo=SHANGHAI).timestamp()
    assert broadcasts.parse_start("2026-11-23T14:30", SHANGHAI, NOON) == local
    assert broadcasts.parse_start("  2026-11-23T14:30 \n", SHANGHAI, NOON) == local
    assert broadcasts.parse_start("2026-11-23T06:30:00+00:00", SHANGHAI, NOON) == local
    utc_wall = datetime(2026, 11, 23, 14, 30, tzinfo=UTC).timestamp()
    assert broadcasts.parse_start("2026-11-23T14:30", ZoneInfo("UTC"), NOON) == utc_wall


@pytest.mark.parametrize("value", [True, False, "tomorrow", "2026-13-01T10:00", "x" * 60, [1], {"at": 1}, 1j])
def test_anything_else_is_an_invalid_start(value: object) -> None:
    """Booleans, unreadable text and other types are refused with the value shown (cut to 40 characters)."""
    with pytest.raises(BroadcastError) as caught:
        broadcasts.parse_start(value, SHANGHAI, NOON)
    shown = f"{'bad' if isinstance(value, bool) else value!s:.40}"
    assert caught.value.code == "invalid_start"
    assert caught.value.kind == "invalid"
    assert caught.value.en == f"Invalid start time: {shown} (e.g. 2026-11-23T14:30)"
    assert caught.value.zh == f"播发时间格式无效：{shown}（例如 2026-11-23T14:30）"


# -- who may send --


def test_a_viewer_may_not_broadcast(db: Database) -> None:
    """A viewer is refused as forbidden."""
    error = refusal(db, VIEWER)
    assert (error.code, error.kind, error.en, error.zh) == (
        "forbidden", "forbidden", "A viewer cannot broadcast.", "只读用户不能播发。",
    )  # fmt: skip


def test_a_warning_source_only_broadcasts_through_an_alert(db: Database) -> None:
    """A warning service's token is refused unless the broadcast comes from the alert policy."""
    for source in ("api", "console", "cli"):
        error = refusal(db, SOURCE, source=source)
        assert (error.code, error.kind, error.en) == (
            "forbidden", "forbidden", "A warning source may post alerts, not broadcasts.",
        )  # fmt: skip
        assert error.zh == "预警信息源只能提交预警，不能直接播发。"
    with db.transaction() as session:
        item = send(session, SOURCE, source="alert", priority="emergency")
        assert (item.source, item.status, item.created_by) == ("alert", "sending", SOURCE)


def test_a_village_head_may_not_send_an_emergency_but_may_send_anything_else(db: Database) -> None:
    """Emergency is refused to a village head; urgent, normal and background are not."""
    error = refusal(db, VILLAGE_HEAD, priority="emergency")
    assert (error.code, error.kind, error.en, error.zh) == (
        "forbidden", "forbidden", "A village head cannot send emergency broadcasts.", "村级用户不能发布应急广播。",
    )  # fmt: skip
    with db.transaction() as session:
        made = [send(session, VILLAGE_HEAD, priority=p).priority for p in ("urgent", "normal", "background")]
    assert made == ["urgent", "normal", "background"]


# -- priority, volume and repeat --


def test_priority_defaults_to_normal_and_must_be_one_of_the_four(db: Database) -> None:
    """No priority is normal; an unknown one is refused with the value shown (cut to 20 characters)."""
    with db.transaction() as session:
        assert send(session, ADMIN).priority == "normal"
        assert send(session, ADMIN, priority="emergency").priority == "emergency"
    for bad in ("EMERGENCY", "highest-of-all-priorities-ever", 1):
        error = refusal(db, priority=bad)
        shown = f"{bad!s:.20}"
        assert (error.code, error.kind) == ("invalid_priority", "invalid")
        assert error.en == f"Invalid priority: {shown} (emergency, urgent, normal or background)"
        assert error.zh == f"优先级无效：{shown}（可选：emergency、urgent、normal、background）"


def test_volume_is_a_whole_number_from_0_to_100_defaulting_to_the_rules(db: Database) -> None:
    """Volume: none is the configured default; whole numbers 0-100, as numbers or digits, pass; nothing else does."""
    with db.transaction() as session:
        assert send(session, ADMIN).volume == 70
        assert [send(session, ADMIN, volume=v).volume for v in (0, 100, "55", " 7 ")] == [0, 100, 55, 7]
    for bad in (-1, 101, "abc", "", 50.0, Decimal(50), True, False, [50]):
        error = refusal(db, volume=bad)
        assert (error.code, error.kind) == ("invalid_volume", "invalid"), bad
        assert error.en == "volume must be a whole number from 0 to 100."
        assert error.zh == "音量必须是 0-100 之间的整数。"


def test_repeat_is_from_1_to_the_configured_maximum(db: Database) -> None:
    """Repeat: none means once; 1 to max_repeat pass; 0, max_repeat + 1 and non-numbers are refused."""
    with db.transaction() as session:
        assert send(session, ADMIN).repeat == 1
        assert [send(session, ADMIN, repeat=r).repeat for r in (1, 5, "3")] == [1, 5, 3]
    for bad in (0, 6, -1, "x", 2.0, True):
        error = refusal(db, repeat=bad)
        assert (error.code, error.kind) == ("invalid_repeat", "invalid"), bad
        assert error.en == "repeat must be a whole number from 1 to 5."
        assert error.zh == "重复次数必须是 1-5 之间的整数。"


def test_an_unknown_clip_is_not_found(db: Database) -> None:
    """A clip id that does not exist is refused as not found."""
    error = refusal(db, clip_id=99)
    assert (error.code, error.kind) == ("not_found", "not_found")


# -- when it starts --


def test_the_start_is_the_later_of_the_requested_time_and_now_plus_the_lead(db: Database) -> None:
    """Now (or a time before now + lead) starts after the lead; a later time starts as requested."""
    with db.transaction() as session:
        assert send(session, ADMIN).start_at == NOON + 3
        assert send(session, ADMIN, start_at=NOON + 1).start_at == NOON + 3
        assert send(session, ADMIN, start_at=NOON - 60).start_at == NOON + 3
        assert send(session, ADMIN, start_at=NOON + 3).start_at == NOON + 3
        assert send(session, ADMIN, start_at=NOON + 3.5).start_at == NOON + 3.5
        assert send(session, ADMIN, start_at="2026-11-23T14:30").start_at == NOON + 2.5 * 3600


def test_a_lead_given_by_the_caller_replaces_the_rules_lead(db: Database) -> None:
    """`lead_s` (an alert's tone already cached) replaces the configured lead, even when it is zero."""
    with db.transaction() as session:
        assert send(session, ADMIN, lead_s=0.0).start_at == NOON
        assert send(session, ADMIN, lead_s=10.0).start_at == NOON + 10
        assert send(session, ADMIN, lead_s=10.0, start_at=NOON + 30).start_at == NOON + 30


def test_without_a_clock_given_now_is_the_current_time(db: Database) -> None:
    """With no `now` the broadcast starts the lead after the current time (at any hour: no quiet hours here)."""
    awake = dataclasses.replace(RULES, quiet_hours=QuietHours.parse(""))
    with db.transaction() as session:
        before = time.time()
        item = broadcasts.create(session, who(session, ADMIN), awake, clip_id=CLIP, targets=[GRID])
        after = time.time()
        assert before + 3 <= item.start_at <= after + 3


def test_a_start_more_than_a_minute_ago_is_refused_and_a_minute_ago_is_now(db: Database) -> None:
    """Up to 60 s in the past is taken as now; earlier is refused as start_in_past."""
    with db.transaction() as session:
        assert send(session, ADMIN, start_at=NOON - 60).start_at == NOON + 3
    error = refusal(db, start_at=NOON - 60.5)
    assert (error.code, error.kind, error.en, error.zh) == (
        "start_in_past", "invalid", "The start time is in the past.", "播发时间已经过去。",
    )  # fmt: skip
    assert refusal(db, start_at=0).code == "start_in_past"


def test_a_start_more_than_366_days_ahead_is_refused(db: Database) -> None:
    """Exactly 366 days ahead is accepted; a moment later is refused as start_too_far."""
    limit = NOON + 366 * 86400
    with db.transaction() as session:
        assert send(session, ADMIN, start_at=limit).start_at == limit
    error = refusal(db, start_at=limit + 0.5)
    assert (error.code, error.kind, error.en, error.zh) == (
        "start_too_far", "invalid", "The start time is more than a year ahead.", "播发时间不能超过一年以后。",
    )  # fmt: skip


def test_quiet_hours_refuse_all_but_emergencies_by_the_real_start(db: Database) -> None:
    """The quiet-hours check uses the start after the lead: 21:59:58 plus 3 s is quiet, plus 1 s is not."""
    evening = datetime(2026, 11, 23, 21, 59, 58, tzinfo=SHANGHAI).timestamp()
    error = refusal(db, now=evening)
    assert (error.code, error.kind) == ("quiet_hours", "invalid")
    assert error.en == "22:00-06:00 are quiet hours: only emergencies may play."
    assert error.zh == "22:00-06:00 为静默时段，只允许应急广播。"
    for priority in ("urgent", "background"):
        assert refusal(db, now=evening, priority=priority).code == "quiet_hours"
    assert refusal(db, start_at="2026-11-24T05:59:59").code == "quiet_hours"
    with db.transaction() as session:
        assert send(session, ADMIN, now=evening, lead_s=1.0).start_at == evening + 1
        assert send(session, ADMIN, now=evening, priority="emergency").start_at == evening + 3
        assert send(session, ADMIN, start_at="2026-11-24T06:00").status == "sending"


def test_quiet_hours_are_read_in_the_rules_time_zone(db: Database) -> None:
    """Noon in the county is 04:00 UTC: quiet under UTC rules, not under the county's."""
    utc_rules = Rules(RULES.quiet_hours, ZoneInfo("UTC"), 3.0, 600.0, 70, 5)
    with db.transaction() as session, pytest.raises(BroadcastError) as caught:
        send(session, ADMIN, rules=utc_rules)
    assert caught.value.code == "quiet_hours"


# -- where it goes --


def test_targets_must_be_a_list(db: Database) -> None:
    """A target given as a bare string (or nothing) is refused: at least one region or speaker is needed."""
    for targets in (GRID, None, {GRID: 1}, []):
        error = refusal(db, targets=targets)
        assert error.code == "targets_required", targets


def test_targets_outside_the_users_region_are_refused(db: Database) -> None:
    """An operator of one township may not broadcast to another's grid."""
    assert refusal(db, OPERATOR, targets=(OTHER_GRID,)).code == "forbidden"


def test_one_queued_delivery_per_enabled_speaker_reached(db: Database) -> None:
    """A village reaches its enabled speakers (not the disabled one), each with one queued delivery."""
    with db.transaction() as session:
        item = send(session, OPERATOR, targets=(VILLAGE,))
        rows = session.execute(select(Delivery.speaker_id, Delivery.state).where(Delivery.broadcast_id == item.id))
        assert sorted(rows.tuples()) == [("s1", "queued"), ("s2", "queued"), ("s3", "queued")]


def test_the_broadcast_records_what_was_asked_and_when_it_expires(db: Database) -> None:
    """The row holds clip, priority, volume, repeat, targets as chosen and on the wire, start, expiry and author."""
    with db.transaction() as session:
        item = send(session, ADMIN, targets=(VILLAGE, GRID, "s4"), priority="urgent", volume="40", repeat=3)
        ident = item.id
    with db.transaction() as session:
        stored = session.get(Broadcast, ident)
        assert stored is not None
        assert (stored.clip_id, stored.priority, stored.volume, stored.repeat) == (CLIP, "urgent", 40, 3)
        assert stored.targets == [VILLAGE, "s4"]
        assert stored.wire_targets == [f"region:{VILLAGE}", "speaker:s4"]
        assert stored.start_at == NOON + 3
        assert stored.expires_at == NOON + 3 + 600 + 4.0 * 3  # ttl plus the clip's play time, repeated
        assert (stored.status, stored.source, stored.created_by) == ("sending", "api", ADMIN)
        rows = session.execute(select(Delivery.speaker_id, Delivery.state).where(Delivery.broadcast_id == ident))
        assert sorted(rows.tuples()) == [("s1", "queued"), ("s2", "queued"), ("s3", "queued"), ("s4", "queued")]
        assert session.scalars(select(Approval)).all() == []


def test_creating_a_broadcast_is_audited_with_what_it_reached(db: Database) -> None:
    """One broadcast.create event by the user: the regions, address, clip, hash, priority, speakers, start, source."""
    with db.transaction() as session:
        item = send(session, OPERATOR, targets=(GRID, "s3"), address="10.0.0.9", source="console")
        ident = item.id
    with db.transaction() as session:
        (event,) = audit_rows(session, "broadcast.create")
        assert (event.actor, event.object_type, event.object_id) == ("operator", "broadcast", str(ident))
        assert (event.region_codes, event.address) == ([GRID, "s3"], "10.0.0.9")
        assert event.detail == {
            "clip_id": CLIP,
            "sha256": SHA,
            "priority": "normal",
            "speakers": 3,
            "start_at": NOON + 3,
            "source": "console",
        }


# -- approvals (先审后播) --


def test_a_role_that_needs_approval_is_held_with_its_deliveries(db: Database) -> None:
    """A village head under APPROVAL_REQUIRED waits: status pending, deliveries held, one approval submitted."""
    rules = Rules(RULES.quiet_hours, SHANGHAI, 3.0, 600.0, 70, 5, approval_required="village_head")
    with db.transaction() as session:
        item = send(session, VILLAGE_HEAD, rules=rules, targets=(GRID,), address="10.0.0.7")
        ident = item.id
        assert item.status == "pending_approval"
    with db.transaction() as session:
        states = session.execute(select(Delivery.speaker_id, Delivery.state).where(Delivery.broadcast_id == ident))
        assert sorted(states.tuples()) == [("s1", "held"), ("s2", "held")]
        (approval,) = session.scalars(select(Approval)).all()
        assert (approval.kind, approval.object_id, approval.region_codes) == ("broadcast", ident, [GRID])
        assert (approval.summary, approval.submitted_by, approval.state) == ("防火通知", VILLAGE_HEAD, "pending")
        (event,) = audit_rows(session, "approval.submit")
        assert (event.actor, event.address) == ("head", "10.0.0.7")


def test_a_held_broadcast_of_an_untitled_clip_is_summarised_by_the_clip_id(db: Database) -> None:
    """The approval's summary is the clip's title, or 节目 <id> when it has none."""
    rules = Rules(RULES.quiet_hours, SHANGHAI, 3.0, 600.0, 70, 5, approval_required="operator")
    with db.transaction() as session:
        send(session, OPERATOR, rules=rules, clip_id=UNTITLED_CLIP)
        assert session.scalars(select(Approval.summary)).all() == [f"节目 {UNTITLED_CLIP}"]


def test_alerts_emergencies_and_other_roles_never_wait(db: Database) -> None:
    """Alerts and emergencies go out at once even for a role that waits; a role not named never waits."""
    rules = Rules(RULES.quiet_hours, SHANGHAI, 3.0, 600.0, 70, 5, approval_required="operator")
    with db.transaction() as session:
        assert send(session, OPERATOR, rules=rules, source="alert").status == "sending"
        assert send(session, OPERATOR, rules=rules, priority="emergency").status == "sending"
        assert send(session, VILLAGE_HEAD, rules=rules).status == "sending"
        states = set(session.scalars(select(Delivery.state)))
        assert states == {"queued"}
        assert session.scalars(select(Approval)).all() == []


def test_a_role_that_waits_only_inside_a_region_waits_there_only(db: Database) -> None:
    """`village_head@<township>` holds the village heads inside that township; one elsewhere sends at once."""
    rules = Rules(RULES.quiet_hours, SHANGHAI, 3.0, 600.0, 70, 5, approval_required=f"village_head@{TOWN}")
    with db.transaction() as session:
        assert send(session, VILLAGE_HEAD, rules=rules).status == "pending_approval"
        assert send(session, OTHER_HEAD, rules=rules, targets=(OTHER_GRID,)).status == "sending"


# -- who sees it --


def stored(db: Database, user: int, targets: tuple[str, ...]) -> int:
    """The id of a broadcast created by `user` to `targets` (as an admin would, scope aside)."""
    with db.transaction() as session:
        item = send(session, ADMIN, targets=targets)
        item.created_by = user
        return int(item.id)


def test_a_broadcast_is_visible_when_every_target_lies_in_the_users_region(db: Database) -> None:
    """Admins see all; others see their own and those whose every target (region or speaker) is in their region."""
    inside = stored(db, ADMIN, (GRID, "s3"))
    mixed = stored(db, ADMIN, (GRID, "s4"))
    elsewhere = stored(db, ADMIN, (OTHER_GRID,))
    own_elsewhere = stored(db, OPERATOR, (OTHER_GRID,))
    with db.transaction() as session:
        admin, operator, other = who(session, ADMIN), who(session, OPERATOR), who(session, OTHER_OPERATOR)
        item = {i: session.get(Broadcast, i) for i in (inside, mixed, elsewhere, own_elsewhere)}
        assert all(broadcasts.visible(session, b, admin) for b in item.values())
        assert [broadcasts.visible(session, item[i], operator) for i in (inside, mixed, elsewhere, own_elsewhere)] == [
            True, False, False, True,
        ]  # fmt: skip
        assert [broadcasts.visible(session, item[i], other) for i in (inside, mixed, elsewhere, own_elsewhere)] == [
            False, False, True, True,
        ]  # fmt: skip
        caller = Caller(OTHER_OPERATOR, "operator", OTHER_TOWN)
        assert broadcasts.visible(session, item[elsewhere], caller)
        assert not broadcasts.visible(session, item[inside], caller)
        tree = regions.load_tree(session)
        assert broadcasts.visible(session, item[inside], operator, tree)
        assert not broadcasts.visible(session, item[elsewhere], operator, tree)


def test_a_target_that_no_longer_exists_hides_the_broadcast_from_scoped_users(db: Database) -> None:
    """A target that is neither a region nor a speaker any more is visible to admins only."""
    ident = stored(db, ADMIN, (GRID,))
    with db.transaction() as session:
        item = session.get(Broadcast, ident)
        assert item is not None
        item.targets = [GRID, "gone-speaker"]
        assert not broadcasts.visible(session, item, who(session, OPERATOR))
        assert broadcasts.visible(session, item, who(session, ADMIN))


def test_get_finds_a_visible_broadcast_and_hides_the_rest_as_not_found(db: Database) -> None:
    """A broadcast the user may not see, a missing id and a non-number are all simply not found."""
    inside = stored(db, ADMIN, (GRID,))
    elsewhere = stored(db, ADMIN, (OTHER_GRID,))
    with db.transaction() as session:
        operator = who(session, OPERATOR)
        assert broadcasts.get(session, inside, operator).id == inside
        assert broadcasts.get(session, str(inside), operator).id == inside
        for ident in (elsewhere, 9999, "abc", "1.5"):
            with pytest.raises(BroadcastError) as caught:
                broadcasts.get(session, ident, operator)
            assert (caught.value.code, caught.value.kind) == ("not_found", "not_found")
            assert caught.value.en == f"Broadcast not found: {ident}"
            assert caught.value.zh == f"播发任务不存在：{ident}"


# -- status --


def test_counts_are_deliveries_by_state(db: Database) -> None:
    """counts() tallies one broadcast's deliveries by state."""
    first = stored(db, ADMIN, (VILLAGE,))
    stored(db, ADMIN, (GRID,))
    with db.transaction() as session:
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.broadcast_id == first, Delivery.speaker_id == "s1")
            .values(state="finished")
        )
        assert broadcasts.counts(session, first) == {"finished": 1, "queued": 2}


@pytest.mark.parametrize(
    ("status", "start", "tally", "expected"),
    [
        ("sending", 100.0, {"finished": 2, "missed": 1}, "done"),
        ("sending", 100.0, {"failed": 1, "preempted": 1, "rejected": 1}, "done"),
        ("sending", 100.0, {"finished": 2, "queued": 1}, "playing"),
        ("sending", 100.0, {}, "playing"),
        ("sending", 1000.0, {}, "playing"),
        ("sending", 1000.0, {"queued": 2}, "playing"),
        ("sending", 1004.0, {"queued": 2}, "sending"),
        ("sending", 1005.0, {"queued": 2}, "sending"),
        ("sending", 1005.5, {"queued": 2}, "scheduled"),
        ("sending", 2000.0, {"queued": 1, "playing": 1}, "playing"),
        ("sending", 2000.0, {"playing": 0, "queued": 1}, "scheduled"),
        ("scheduled", 2000.0, {"finished": 1}, "done"),
        ("rejected", 100.0, {"held": 2}, "rejected"),
        ("rejected", 100.0, {"finished": 2}, "rejected"),
        ("pending_approval", 100.0, {"held": 2}, "pending_approval"),
        ("pending_approval", 100.0, {"held": 0, "queued": 1}, "playing"),
        ("pending_approval", 100.0, {"finished": 1}, "done"),
    ],
)
def test_the_status_rolls_up_from_the_deliveries(
    status: str, start: float, tally: dict[str, int], expected: str
) -> None:
    """Done when every delivery ended; playing once started or anything plays; scheduled beyond 5 s; else sending."""
    assert broadcasts.rolled_up(status, start, tally, 1000.0) == expected


def test_refresh_status_sets_the_rolled_up_status_and_logs_the_end(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The item takes the new status; reaching done logs one line with the counts, sorted by state."""
    ident = stored(db, ADMIN, (VILLAGE,))
    with db.transaction() as session:
        item = session.get(Broadcast, ident)
        assert item is not None
        assert broadcasts.refresh_status(session, item, now=NOON) == "sending"
        assert item.status == "sending"
        assert broadcasts.refresh_status(session, item, now=NOON + 3) == "playing"
        assert item.status == "playing"
        assert broadcasts.refresh_status(session, item, now=NOON - 10) == "scheduled"
        with caplog.at_level(logging.INFO, logger="broadcast.services.broadcasts"):
            tally = {"missed": 1, "finished": 2}
            assert broadcasts.refresh_status(session, item, now=NOON, tally=tally) == "done"
        assert item.status == "done"
        assert [r.getMessage() for r in caplog.records if r.name == "broadcast.services.broadcasts"] == [
            f"broadcast {ident} (api) done: finished=2, missed=1"
        ]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="broadcast.services.broadcasts"):
            assert broadcasts.refresh_status(session, item, now=NOON, tally=tally) == "done"
        assert caplog.records == []


def test_a_broadcast_waiting_for_its_approver_keeps_that_status_whatever_the_clock(db: Database) -> None:
    """While its deliveries are held, a pending broadcast stays pending in refresh_status and in the view."""
    rules = Rules(RULES.quiet_hours, SHANGHAI, 3.0, 600.0, 70, 5, approval_required="village_head")
    with db.transaction() as session:
        item = send(session, VILLAGE_HEAD, rules=rules)
        assert broadcasts.refresh_status(session, item, now=NOON + 60) == "pending_approval"
        assert broadcasts.view(session, item.id, who(session, VILLAGE_HEAD), now=NOON + 60)["status"] == (
            "pending_approval"
        )
        item.status = "rejected"
        assert broadcasts.refresh_status(session, item, now=NOON + 60) == "rejected"


def test_refresh_status_reads_the_clock_and_the_deliveries_when_not_given(db: Database) -> None:
    """Without `now` it is the current time; without `tally` the stored deliveries are counted."""
    ident = stored(db, ADMIN, (GRID,))
    with db.transaction() as session:
        item = session.get(Broadcast, ident)
        assert item is not None
        item.start_at = time.time() + 3600
        assert broadcasts.refresh_status(session, item) == "scheduled"
        item.start_at = time.time() - 1
        assert broadcasts.refresh_status(session, item) == "playing"
        session.execute(Delivery.__table__.update().where(Delivery.broadcast_id == ident).values(state="finished"))
        assert broadcasts.refresh_status(session, item) == "done"


# -- the view --


def test_the_view_shows_the_broadcast_its_clip_targets_and_every_delivery(db: Database) -> None:
    """view(): the fields as the API shows them, target names (a speaker by its id), counts and deliveries by id."""
    with db.transaction() as session:
        ident = send(session, ADMIN, targets=(GRID, "s3"), priority="urgent", volume=40, repeat=2).id
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.broadcast_id == ident, Delivery.speaker_id == "s2")
            .values(state="finished", acknowledged_at=NOON + 3.5, started_at=NOON + 4, finished_at=NOON + 12)
        )
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.broadcast_id == ident, Delivery.speaker_id == "s3")
            .values(state="failed", reason="no_media")
        )
    with db.transaction() as session:
        created = session.get(Broadcast, ident)
        assert created is not None
        body = broadcasts.view(session, ident, who(session, OPERATOR), now=NOON)
        assert body == {
            "id": ident,
            "status": "sending",
            "clip_id": CLIP,
            "clip": {"duration_ms": 4000, "sha256": SHA, "title": "防火通知"},
            "priority": "urgent",
            "volume": 40,
            "repeat": 2,
            "targets": [{"id": GRID, "name": "甲一网格"}, {"id": "s3", "name": "s3"}],
            "start_at": NOON + 3,
            "expires_at": NOON + 3 + 600 + 8,
            "created_at": created.created_at.isoformat(),
            "counts": {"queued": 1, "finished": 1, "failed": 1},
            "deliveries": [
                {"speaker_id": "s1", "state": "queued", "acknowledged_at": None, "started_at": None,
                 "finished_at": None, "reason": None},
                {"speaker_id": "s2", "state": "finished", "acknowledged_at": NOON + 3.5, "started_at": NOON + 4,
                 "finished_at": NOON + 12, "reason": None},
                {"speaker_id": "s3", "state": "failed", "acknowledged_at": None, "started_at": None,
                 "finished_at": None, "reason": "no_media"},
            ],
        }  # fmt: skip
        assert broadcasts.view(session, str(ident), Caller(OPERATOR, "operator", TOWN), now=NOON + 3)["status"] == (
            "playing"
        )
        assert (
            broadcasts.view(session, ident, who(session, ADMIN))["status"] == "playing"
        )  # the clock: 2026-11-23 passed


def test_the_view_is_not_found_for_a_reader_who_may_not_see_it(db: Database) -> None:
    """A broadcast outside the reader's region, a missing id and a non-number read as not found."""
    elsewhere = stored(db, ADMIN, (OTHER_GRID,))
    with db.transaction() as session:
        for ident in (elsewhere, 9999, "x1"):
            with pytest.raises(BroadcastError) as caught:
                broadcasts.view(session, ident, Caller(OPERATOR, "operator", TOWN), now=NOON)
            assert (caught.value.code, caught.value.en) == ("not_found", f"Broadcast not found: {ident}")
            assert caught.value.zh == f"播发任务不存在：{ident}"
        assert broadcasts.view(session, elsewhere, Caller(OTHER_OPERATOR, "operator", OTHER_TOWN))["id"] == elsewhere


def test_a_broadcast_whose_clip_is_gone_shows_no_clip(db: Database) -> None:
    """describe() shows `clip: None` for a row whose clip was not found."""
    ident = stored(db, ADMIN, (GRID,))
    with db.transaction() as session:
        row = session.connection().execute(broadcasts.VIEW_ONE, {"ident": ident}).one()
        gone = SimpleNamespace(**{**row._asdict(), "clip_found": None, "duration_ms": None, "sha256": None})
        body = broadcasts.describe(session, gone, "done", {}, [])
        assert (body["clip"], body["clip_id"], body["status"], body["counts"], body["deliveries"]) == (
            None, CLIP, "done", {}, [],
        )  # fmt: skip
