"""Pins of receipts: the state a delivery really reached, when a speaker is asked again, and fleet presence."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.db import Database
from broadcast.models import AuditEvent, Broadcast, Clip, Command, Delivery, Region, Speaker
from broadcast.services import receipts
from broadcast.services.receipts import ReceiptIn
from tests.sql import recorded_statements

GRID = "421224104201010"
SPEAKERS = ("spk-1", "spk-2", "spk-3")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An empty, current database with one grid and three speakers in it."""
    database = Database(database_url)
    database.upgrade()
    with database.transaction() as session:
        session.add(Region(code=GRID, name="网格", level="grid", parent_code=None))
        session.flush()
        session.add_all(Speaker(id=s, name=s, grid_code=GRID) for s in SPEAKERS)
    yield database
    database.dispose()


def stored_broadcast(
    db: Database, *, start_at: float = 1000.0, expires_at: float = 5000.0, repeat: int = 1, states: dict[str, str]
) -> int:
    """A 4-second clip broadcast with one delivery per speaker given (speaker id -> state)."""
    with db.transaction() as session:
        clip = Clip(
            sha256="ab" * 32, format="opus", mime="audio/ogg", size_bytes=1, duration_ms=4000, loudness_lufs=-16.0,
            true_peak_dbtp=-1.0, source="tts",
        )  # fmt: skip
        session.add(clip)
        session.flush()
        item = Broadcast(
            clip_id=clip.id, priority="normal", volume=70, repeat=repeat, targets=[GRID], wire_targets=[],
            start_at=start_at, expires_at=expires_at,
        )  # fmt: skip
        session.add(item)
        session.flush()
        session.add_all(Delivery(broadcast_id=item.id, speaker_id=s, state=st) for s, st in states.items())
        return int(item.id)


def apply(db: Database, *items: ReceiptIn) -> list[bool]:
    """Apply receipts as the receipt consumer does: one batch, preloaded."""
    with db.transaction() as session:
        found = receipts.preload(session, list(items), {r.speaker_id for r in items})
        return [receipts.apply_receipt(session, r, found) for r in items]


def delivery(db: Database, broadcast_id: int, speaker_id: str = "spk-1") -> Delivery:
    """A delivery as stored."""
    with db.transaction() as session:
        return session.scalars(
            select(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id == speaker_id)
        ).one()


def receipt(event: str, broadcast_id: int | str | None, *, at: float = 2000.0, **fields: Any) -> ReceiptIn:
    """A receipt from spk-1 (unless told otherwise)."""
    values: dict[str, Any] = {"speaker_id": "spk-1", "command_id": "cmd-1", "reason": None}
    values.update(fields)
    bid = None if broadcast_id is None else str(broadcast_id)
    return ReceiptIn(values["speaker_id"], values["command_id"], bid, event, at, values["reason"])


# -- receipts to delivery states --


@pytest.mark.parametrize(
    ("event", "state"),
    [
        ("acknowledged", "acknowledged"),
        ("started", "playing"),
        ("finished", "finished"),
        ("preempted", "preempted"),
        ("failed", "failed"),
        ("missed", "missed"),
        ("rejected", "rejected"),
        ("refused", "failed"),
        ("stopped", "failed"),
    ],
)
def test_each_event_moves_a_sent_delivery_to_its_state(db: Database, event: str, state: str) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "sent"})
    assert apply(db, receipt(event, bid)) == [True]
    assert delivery(db, bid).state == state
    assert delivery(db, bid, "spk-2").state == "sent", "only the reporting speaker's delivery moves"


def test_an_acknowledgement_folded_into_a_started_receipt_is_recorded(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "acknowledged"})
    folded = ReceiptIn("spk-1", "cmd-1", str(bid), "started", 2001.0, acknowledged_at=2000.4)
    assert apply(db, folded) == [True]
    assert (delivery(db, bid).state, delivery(db, bid).acknowledged_at, delivery(db, bid).started_at) == (
        "playing",
        2000.4,
        2001.0,
    )
    with db.transaction() as session:  # a speaker that acknowledged on its own keeps that moment
        session.execute(
            Delivery.__table__.update().where(Delivery.speaker_id == "spk-2").values(acknowledged_at=1999.0)
        )
    assert apply(db, ReceiptIn("spk-2", "cmd-1", str(bid), "started", 2001.0, acknowledged_at=2000.5)) == [True]
    assert delivery(db, bid, "spk-2").acknowledged_at == 1999.0


def test_a_folded_acknowledgement_is_read_in_server_time() -> None:
    from broadcast.worker import _receipt_in
    from speakers.messages import Receipt

    wire = Receipt("spk-1", "cmd-1", "7", "started", 2001.0, detail={"acknowledged_at": 2000.4}, offset_ms=250.0)
    assert _receipt_in(wire).acknowledged_at == pytest.approx(2000.65)
    assert _receipt_in(wire).at == pytest.approx(2001.25)
    for odd in ("soon", True, None):  # what a speaker may not send changes nothing
        assert (
            _receipt_in(Receipt("spk-1", "c", "7", "started", 1.0, detail={"acknowledged_at": odd})).acknowledged_at
            is None
        )


def test_deliveries_only_move_forward_and_an_end_is_final(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "queued"})
    assert apply(db, receipt("started", bid, at=2001)) == [True]
    assert apply(db, receipt("acknowledged", bid, at=2002)) == [False], "a late acknowledgement changes nothing"
    assert delivery(db, bid).state == "playing"
    assert apply(db, receipt("started", bid, at=2003)) == [False]
    assert delivery(db, bid).started_at == 2001
    assert apply(db, receipt("finished", bid, at=2010)) == [True]
    for later in ("failed", "started", "preempted", "missed", "finished"):
        assert apply(db, receipt(later, bid, at=2020)) == [False]
    stored = delivery(db, bid)
    assert (stored.state, stored.finished_at) == ("finished", 2010)


def test_an_end_may_come_straight_from_queued_and_acknowledged_follows_sent(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "queued", "spk-2": "sent"})
    assert apply(db, receipt("missed", bid, at=2005), receipt("acknowledged", bid, speaker_id="spk-2")) == [True, True]
    assert (delivery(db, bid).state, delivery(db, bid).finished_at) == ("missed", 2005)
    assert delivery(db, bid, "spk-2").state == "acknowledged"


def test_the_advance_rule() -> None:
    advances = receipts._advances
    assert advances("queued", "sent")
    assert advances("sent", "acknowledged")
    assert advances("acknowledged", "playing")
    assert not advances("playing", "acknowledged")
    assert not advances("sent", "sent")
    assert advances("playing", "failed")
    assert advances("queued", "rejected")
    assert not advances("rejected", "finished")
    assert not advances("finished", "failed")
    assert advances("mystery", "queued"), "an unknown current state ranks below every known one"
    assert not advances("queued", "mystery")


def test_reasons_are_recorded_and_a_device_refusal_names_its_rule(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "sent", "spk-3": "playing"})
    apply(
        db,
        receipt("refused", bid, reason="quiet_hours"),
        receipt("failed", bid, speaker_id="spk-2", reason="x" * 300),
        receipt("stopped", bid, speaker_id="spk-3"),
    )
    assert delivery(db, bid).reason == "refused:quiet_hours"
    assert delivery(db, bid, "spk-2").reason == "x" * 200, "cut to the column"
    assert delivery(db, bid, "spk-3").reason == "stopped:stopped"
    other = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "sent"})
    apply(db, receipt("refused", other), receipt("finished", other, speaker_id="spk-2"))
    assert delivery(db, other).reason == "refused:refused"
    assert delivery(db, other, "spk-2").reason is None
    long = stored_broadcast(db, states={"spk-1": "sent"})
    apply(db, receipt("refused", long, reason="y" * 300))
    assert delivery(db, long).reason == "refused:" + "y" * 192


def test_a_speaker_that_already_played_the_broadcast_changes_nothing(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent"})
    assert apply(db, receipt("refused", bid, reason="already_played")) == [False]
    assert (delivery(db, bid).state, delivery(db, bid).reason) == ("sent", None)


def test_receipts_that_name_no_known_delivery_are_ignored(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent"})
    with caplog.at_level(logging.INFO, logger="broadcast.services.receipts"):
        assert (
            apply(
                db,
                receipt("exploded", bid),
                receipt("finished", None),
                receipt("finished", "abc"),
                receipt("finished", bid + 1),
                receipt("finished", bid, speaker_id="spk-2"),
            )
            == [False] * 5
        )
    assert delivery(db, bid).state == "sent"
    messages = [r.getMessage() for r in caplog.records]
    assert f"receipt for unknown delivery {bid + 1}/spk-1" in messages
    assert f"receipt for unknown delivery {bid}/spk-2" in messages


def test_preload_fetches_the_deliveries_a_batch_names(db: Database) -> None:
    first = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "sent", "spk-3": "sent"})
    second = stored_broadcast(db, states={"spk-1": "sent", "spk-2": "sent"})
    batch = [
        receipt("started", first),
        receipt("finished", first, speaker_id="spk-3"),
        receipt("acknowledged", second, speaker_id="spk-2"),
        receipt("exploded", second),  # no state: not loaded
        receipt("finished", "x1"),
        receipt("finished", None),
    ]
    with db.transaction() as session:
        found = receipts.preload(session, batch, {"spk-1", "spk-2", "spk-3"})
        assert sorted(found) == [(first, "spk-1"), (first, "spk-3"), (second, "spk-2")]
        assert all(found[key].broadcast_id == key[0] and found[key].speaker_id == key[1] for key in found)
        assert receipts.preload(session, [], set()) == {}


# -- rejections --


def test_a_rejection_is_counted_audited_and_ends_an_unanswered_delivery(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "sent"})
    assert apply(db, receipt("rejected", bid, reason="bad_signature", command_id="cmd-9")) == [True]
    stored = delivery(db, bid)
    assert (stored.state, stored.reason, stored.finished_at) == ("rejected", "bad_signature", None)
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").rejected_count == 1  # type: ignore[union-attr]
        assert session.get(Speaker, "spk-2").rejected_count == 0  # type: ignore[union-attr]
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "speaker.rejected_command")).one()
        assert (event.actor, event.object_type, event.object_id) == ("speaker:spk-1", "command", "cmd-9")
        assert event.detail == {"reason": "bad_signature", "broadcast_id": str(bid)}


@pytest.mark.parametrize(
    ("state", "reason"), [("acknowledged", "bad_signature"), ("sent", "replayed"), ("queued", "duplicate")]
)
def test_a_rejected_copy_of_a_command_already_accepted_leaves_the_delivery(
    db: Database, state: str, reason: str
) -> None:
    bid = stored_broadcast(db, states={"spk-1": state})
    assert apply(db, receipt("rejected", bid, reason=reason)) == [False]
    assert delivery(db, bid).state == state
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").rejected_count == 1, "still counted"  # type: ignore[union-attr]


def test_a_rejection_of_a_command_of_no_broadcast_is_still_counted(db: Database) -> None:
    assert apply(db, receipt("rejected", None, reason="expired"), receipt("rejected", None)) == [False, False]
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").rejected_count == 2  # type: ignore[union-attr]
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "speaker.rejected_command")).all()
        assert [e.detail for e in events] == [
            {"reason": "expired", "broadcast_id": None},
            {"reason": None, "broadcast_id": None},
        ]


# -- acknowledgements of schedules --


def test_an_acknowledged_schedule_snapshot_marks_the_speaker_synced(db: Database) -> None:
    with db.transaction() as session:
        for kind, command_id in (("schedule", "sched-1"), ("stop", "stop-1")):
            session.add(Command(command_id=command_id, kind=kind, body={}, issued_at=1, expires_at=2))
    at = 1_800_000_000.0
    assert apply(db, receipt("acknowledged", None, at=at, command_id="stop-1")) == [False]
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").schedule_synced_at is None  # type: ignore[union-attr]
    assert apply(
        db,
        receipt("acknowledged", None, at=at, command_id="sched-1"),
        receipt("acknowledged", None, at=at, command_id=None, speaker_id="spk-2"),
    ) == [False, False]
    with db.transaction() as session:
        synced = session.get(Speaker, "spk-1").schedule_synced_at  # type: ignore[union-attr]
        assert synced is not None
        assert synced.replace(tzinfo=UTC) == datetime.fromtimestamp(at, UTC)
        assert session.get(Speaker, "spk-2").schedule_synced_at is None  # type: ignore[union-attr]


def test_an_acknowledged_schedule_naming_a_broadcast_is_a_play_acknowledgement(db: Database) -> None:
    with db.transaction() as session:
        session.add(Command(command_id="sched-1", kind="schedule", body={}, issued_at=1, expires_at=2))
    bid = stored_broadcast(db, states={"spk-1": "sent"})
    assert apply(db, receipt("acknowledged", bid, command_id="sched-1")) == [True]
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").schedule_synced_at is None  # type: ignore[union-attr]


# -- when to ask again --


def test_an_acknowledged_speaker_is_asked_again_ten_seconds_after_the_play_should_end(db: Database) -> None:
    # 3 plays of 4 s with the speakers' 2 s gaps: 16 s of play
    early = stored_broadcast(db, start_at=3000.0, repeat=3, states={"spk-1": "sent", "spk-2": "sent"})
    apply(db, receipt("acknowledged", early, at=2000.0), receipt("acknowledged", early, at=3500.0, speaker_id="spk-2"))
    stored = delivery(db, early)
    assert (stored.acknowledged_at, stored.started_at) == (2000.0, None)
    assert stored.next_resend_at == 3000.0 + 16.0 + 10.0, "counted from the start when acknowledged early"
    assert delivery(db, early, "spk-2").next_resend_at == 3500.0 + 26.0, "from the acknowledgement when late"


def test_a_playing_speaker_is_asked_again_after_its_play_from_the_start_it_reported(db: Database) -> None:
    bid = stored_broadcast(db, start_at=3000.0, repeat=1, states={"spk-1": "acknowledged"})
    apply(db, receipt("started", bid, at=2500.0))
    stored = delivery(db, bid)
    assert (stored.started_at, stored.finished_at) == (2500.0, None)
    assert stored.next_resend_at == 2500.0 + 4.0 + 10.0


def test_an_ended_delivery_records_when_and_is_not_asked_again_by_the_receipt(db: Database) -> None:
    bid = stored_broadcast(db, states={"spk-1": "playing"})
    with db.transaction() as session:
        session.scalars(select(Delivery)).one().next_resend_at = 77.0
    apply(db, receipt("preempted", bid, at=2222.0))
    stored = delivery(db, bid)
    assert (stored.state, stored.finished_at, stored.next_resend_at) == ("preempted", 2222.0, 77.0)


# -- speaker state --


def test_state_marks_a_speaker_online_with_its_fields(db: Database) -> None:
    at = 1_800_000_000.0
    fields = {
        "at": at, "online": True, "agent_version": "1.4.2", "playing": "17", "clock_offset_ms": -12.5,
        "cache_bytes": 5000, "cache_cap_bytes": 90000, "extra": [1, 2], "note": None,
    }  # fmt: skip
    with db.transaction() as session:
        assert receipts.apply_state(session, "spk-1", fields) == "online"
    with db.transaction() as session:
        speaker = session.get(Speaker, "spk-1")
        assert speaker is not None
        assert speaker.online is True
        assert speaker.last_seen is not None
        assert speaker.last_seen.replace(tzinfo=UTC) == datetime.fromtimestamp(at, UTC)
        assert (speaker.agent_version, speaker.playing_broadcast_id, speaker.clock_offset_ms) == ("1.4.2", "17", -12.5)
        assert (speaker.cache_bytes, speaker.cache_cap_bytes) == (5000, 90000)
        assert speaker.state == {k: v for k, v in fields.items() if k != "extra"}, "lists are not kept"
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.actor == "speaker:spk-1")).all()
        assert event.action == "speaker.online"


def test_state_reports_only_changes_of_presence_and_keeps_the_last_seen_time_offline(db: Database) -> None:
    with db.transaction() as session:
        assert receipts.apply_state(session, "spk-1", {"at": 100.0}) == "online", "online unless told otherwise"
    with db.transaction() as session:
        assert receipts.apply_state(session, "spk-1", {"at": 200.0, "agent_version": "2"}) is None
        assert receipts.apply_state(session, "spk-1", {"at": 300.0, "online": False}) == "offline"
        assert receipts.apply_state(session, "spk-1", {"at": 400.0, "online": False}) is None
        assert receipts.apply_state(session, "spk-unknown", {"at": 400.0}) is None
    with db.transaction() as session:
        speaker = session.get(Speaker, "spk-1")
        assert speaker is not None
        assert speaker.online is False
        assert speaker.agent_version == "2", "fields not sent keep their value"
        assert speaker.last_seen is not None
        assert speaker.last_seen.replace(tzinfo=UTC) == datetime.fromtimestamp(200.0, UTC)
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "speaker:spk-1")).all()
        assert sorted(actions) == ["speaker.offline", "speaker.online"]


def test_state_without_a_time_is_seen_now(db: Database) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with db.transaction() as session:
        receipts.apply_state(session, "spk-1", {"at": "yesterday"})
    with db.transaction() as session:
        seen = session.get(Speaker, "spk-1").last_seen  # type: ignore[union-attr]
        assert seen is not None
        assert before <= seen.replace(tzinfo=UTC) <= datetime.now(UTC) + timedelta(seconds=1)


def _statements_for_a_batch(db: Database, count: int) -> tuple[int, int]:
    """Apply, as the worker does, the first state of `count` new speakers and their schedule acknowledgements.

    Returns the SQL statements the batch ran and the speakers it left online and synced.
    """
    ids = [f"spk-batch-{count}-{i}" for i in range(count)]
    with db.transaction() as session:
        session.add_all(Speaker(id=s, name=s, grid_code=GRID) for s in ids)
        session.add_all(
            Command(command_id=f"snap-{s}", kind="schedule", topics=[], body={}, issued_at=0.0, expires_at=1e10,
                    attempts=0)
            for s in ids
        )  # fmt: skip
    acks = [ReceiptIn(s, f"snap-{s}", None, "acknowledged", 1_800_000_000.0) for s in ids]
    with recorded_statements(db.engine) as statements, db.transaction() as session:
        found = receipts.preload(session, acks, set(ids))
        for speaker_id in ids:
            assert receipts.apply_state(session, speaker_id, {"at": 1_800_000_000.0}) == "online"
        for ack in acks:
            receipts.apply_receipt(session, ack, found)
    with db.transaction() as session:
        done = session.scalar(
            select(func.count()).select_from(Speaker).where(
                Speaker.id.in_(ids), Speaker.online.is_(True), Speaker.schedule_synced_at.is_not(None)
            )
        )  # fmt: skip
    # the audit trail's own rows are one insert each; everything else must not grow with the batch
    return len([s for s in statements if not s.startswith("INSERT INTO audit_events")]), int(done or 0)


def test_a_batch_of_states_and_schedule_acknowledgements_costs_the_same_statements_for_5_or_60_speakers(
    db: Database,
) -> None:
    """A county coming online: each speaker's first state (audited) and snapshot acknowledgement in one batch.

    Its speakers are loaded once and kept for the batch; before, each state queried its speaker again (the
    identity map had let go of it), flushing and sealing the previous one first: statements grew with the batch.
    """
    few, few_done = _statements_for_a_batch(db, 5)
    many, many_done = _statements_for_a_batch(db, 60)
    assert (few_done, many_done) == (5, 60)
    assert many - few <= 2, f"{few} statements for 5 speakers, {many} for 60"


def _statements_for_a_play(db: Database, count: int) -> tuple[int, set[tuple[str, float | None]]]:
    """Apply, in one batch as the worker does, `count` speakers' acknowledgements and starts of one broadcast.

    Returns the SQL statements the batch ran and the (state, next query) its deliveries were left in.
    """
    ids = [f"spk-play-{count}-{i}" for i in range(count)]
    with db.transaction() as session:
        session.add_all(Speaker(id=s, name=s, grid_code=GRID) for s in ids)
    item = stored_broadcast(db, start_at=3000.0, states=dict.fromkeys(ids, "sent"))
    batch = [ReceiptIn(s, "cmd-1", str(item), "acknowledged", 2999.0) for s in ids]
    batch += [ReceiptIn(s, "cmd-1", str(item), "started", 3000.5) for s in ids]
    with recorded_statements(db.engine) as statements, db.transaction() as session:
        found = receipts.preload(session, batch, set())
        assert all(receipts.apply_receipt(session, r, found) for r in batch)
    with db.transaction() as session:
        rows = session.execute(select(Delivery.state, Delivery.next_resend_at).where(Delivery.broadcast_id == item))
        return len(statements), {(state, at) for state, at in rows}


def test_a_batch_of_acknowledgements_and_starts_costs_the_same_statements_for_5_or_60_speakers(db: Database) -> None:
    """An alert's receipts: each delivery's next query needs its broadcast's play length, looked up once a batch.

    Before, each receipt fetched the broadcast and its clip again (the identity map had let go of them),
    flushing the previous delivery first: at 10,000 speakers that was most of the receipt writer's time.
    """
    few, few_rows = _statements_for_a_play(db, 5)
    many, many_rows = _statements_for_a_play(db, 60)
    assert few_rows == many_rows == {("playing", 3000.5 + 4.0 + 10.0)}, "started, asked again after its 4-s play"
    assert many - few <= 2, f"{few} statements for 5 speakers, {many} for 60"


def test_speakers_silent_too_long_are_marked_offline(db: Database) -> None:
    now = datetime.now(UTC)
    with db.transaction() as session:
        for speaker_id, seen, online in (("spk-1", 120, True), ("spk-2", 30, True), ("spk-3", 500, False)):
            speaker = session.get(Speaker, speaker_id)
            assert speaker is not None
            speaker.online, speaker.last_seen = online, now - timedelta(seconds=seen)
    with db.transaction() as session:
        assert receipts.mark_stale_offline(session, 60) == 1
    with db.transaction() as session:
        assert {s.id: s.online for s in session.scalars(select(Speaker))} == {
            "spk-1": False,
            "spk-2": True,
            "spk-3": False,
        }
        assert receipts.mark_stale_offline(session, 10) == 1


# -- expiry --


def test_expired_broadcasts_end_every_open_delivery_with_the_reason(db: Database) -> None:
    now = 10_000.0
    states = {"spk-1": "sent", "spk-2": "acknowledged", "spk-3": "playing"}
    long_ago = stored_broadcast(db, expires_at=now - 121, states=states)
    lately = stored_broadcast(db, expires_at=now - 60, states=states)
    live = stored_broadcast(db, expires_at=now, states=states)
    done = stored_broadcast(
        db, expires_at=now - 500, states={"spk-1": "queued", "spk-2": "acknowledged", "spk-3": "playing"}
    )
    with db.transaction() as session:
        session.get(Broadcast, done).status = "done"  # type: ignore[union-attr]
        for row in session.scalars(select(Delivery)):
            row.next_resend_at = 1.0
    with db.transaction() as session:
        assert receipts.expire_deliveries(session, now) == 5
    with db.transaction() as session:
        rows = {
            (d.broadcast_id, d.speaker_id): (d.state, d.reason, d.next_resend_at)
            for d in session.scalars(select(Delivery))
        }
    assert rows[(long_ago, "spk-1")] == ("missed", "offline_through_window", None)
    assert rows[(long_ago, "spk-2")] == ("missed", "no_receipt_after_ack", None)
    assert rows[(long_ago, "spk-3")] == ("failed", "no_final_receipt", None)
    assert rows[(lately, "spk-1")] == ("missed", "offline_through_window", None)
    assert rows[(lately, "spk-2")] == ("missed", "no_receipt_after_ack", None)
    assert rows[(lately, "spk-3")] == ("playing", None, 1.0), "still within the grace for its final receipt"
    assert all(rows[(live, s)][0] == st for s, st in states.items())
    assert [rows[(done, s)] for s in SPEAKERS] == [
        ("queued", None, 1.0),
        ("acknowledged", None, 1.0),
        ("playing", None, 1.0),
    ], "a finished broadcast's deliveries are left as they are"


def test_a_playing_delivery_gets_exactly_two_minutes_of_grace(db: Database) -> None:
    now = 10_000.0
    edge = stored_broadcast(db, expires_at=now - 120, states={"spk-1": "playing", "spk-2": "queued"})
    with db.transaction() as session:
        assert receipts.expire_deliveries(session, now) == 1
        assert receipts.expire_deliveries(session, now + 0.5) == 1
    assert delivery(db, edge).state == "failed"
    assert delivery(db, edge, "spk-2").state == "missed"


@pytest.fixture
def shanghai_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone set to China's, as a county server may well have it."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("shanghai_clock")
def test_times_from_speakers_are_kept_in_utc_whatever_the_local_zone(db: Database) -> None:
    at = 1_800_000_000.0
    with db.transaction() as session:
        session.add(Command(command_id="sched-1", kind="schedule", body={}, issued_at=1, expires_at=2))
    apply(db, receipt("acknowledged", None, at=at, command_id="sched-1"))
    with db.transaction() as session:
        receipts.apply_state(session, "spk-2", {"at": at})
    with db.transaction() as session:
        assert session.get(Speaker, "spk-1").schedule_synced_at == datetime.fromtimestamp(at, UTC)  # type: ignore[union-attr]
        assert session.get(Speaker, "spk-2").last_seen == datetime.fromtimestamp(at, UTC)  # type: ignore[union-attr]
        assert receipts.mark_stale_offline(session, 60, now=at + 60) == 0
        assert receipts.mark_stale_offline(session, 60, now=at + 61) == 1


def test_stale_is_measured_from_the_time_given(db: Database) -> None:
    at = 1_800_000_000.0
    with db.transaction() as session:
        receipts.apply_state(session, "spk-1", {"at": at})
    with db.transaction() as session:
        assert receipts.mark_stale_offline(session, 60, now=at + 60) == 0, "exactly the limit: not yet"
        assert session.get(Speaker, "spk-1").online is True  # type: ignore[union-attr]
        assert receipts.mark_stale_offline(session, 60, now=at + 60.5) == 1
        assert session.get(Speaker, "spk-1").online is False  # type: ignore[union-attr]
        assert receipts.mark_stale_offline(session, 60, now=at + 600) == 0, "nothing left to mark"
