"""Pins of fleet alarms: each kind (never seen, offline, failing, rejecting) is raised, and cleared again."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import AuditEvent, Speaker
from broadcast.services import accounts, broadcasts, fleet, receipts
from tests.broadcast.conftest import auth, seed_county

SPEAKER = "spk-42122410420101-1"  # 黄沙村第一网格1号音柱
OTHER = "spk-42122410420101-2"


@pytest.fixture
def county(app: Any) -> tuple[Any, dict[str, str]]:
    """The seeded demo county and its API tokens."""
    return app, seed_county(app)


def alarms_of(app: Any, token: str, speaker_id: str = SPEAKER) -> dict[str, dict[str, Any]]:
    """The speaker's alarms from the API, by kind."""
    reply = app.test_client().get("/api/v1/alarms", headers=auth(token))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return {a["kind"]: a for a in reply.get_json()["items"] if a["speaker_id"] == speaker_id}


def state(app: Any, speaker_id: str, **fields: Any) -> None:
    """A speaker's retained state as the receipt consumer records it."""
    with app.extensions["platform"].db.transaction() as session:
        receipts.apply_state(session, speaker_id, {"at": time.time(), **fields})


def receipt(app: Any, speaker_id: str, event: str, broadcast_id: int, reason: str | None = None) -> None:
    """A receipt as the receipt consumer applies it."""
    item = receipts.ReceiptIn(speaker_id, f"cmd-{broadcast_id}", str(broadcast_id), event, time.time(), reason)
    with app.extensions["platform"].db.transaction() as session:
        assert receipts.apply_receipt(session, item, receipts.preload(session, [item], {speaker_id}))


def broadcast(app: Any, token: str, clip_id: int, speaker_id: str = SPEAKER) -> int:
    """A broadcast to one speaker, recorded by the broadcast service as the API does (not published)."""
    platform = app.extensions["platform"]
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        item = broadcasts.create(session, admin, platform.rules, clip_id=clip_id, targets=[speaker_id])
        session.flush()
        return int(item.id)


def a_clip(app: Any, token: str) -> int:
    """One TTS clip through the API."""
    reply = app.test_client().post("/api/v1/clips", json={"text": "测试。"}, headers=auth(token))
    assert reply.status_code == 201, reply.get_data(as_text=True)
    return int(reply.get_json()["id"])


def test_never_seen_is_raised_and_cleared_by_the_first_state(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    found = alarms_of(app, tokens["admin"])
    assert set(found) == {"never_seen"}
    assert found["never_seen"]["since"] is None
    assert found["never_seen"]["region_path"] == "通山县 / 黄沙铺镇 / 黄沙村 / 黄沙村第一网格"
    assert found["never_seen"]["name"] == "黄沙村第一网格1号音柱"
    assert found["never_seen"]["detail"] == "从未上线"
    state(app, SPEAKER, online=True)
    assert alarms_of(app, tokens["admin"]) == {}
    assert "never_seen" in alarms_of(app, tokens["admin"], OTHER), "only the speaker that reported is cleared"


def test_offline_is_raised_when_the_will_arrives_and_cleared_when_back(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    state(app, SPEAKER, online=True)
    assert alarms_of(app, tokens["admin"]) == {}
    state(app, SPEAKER, online=False)
    found = alarms_of(app, tokens["admin"])
    assert set(found) == {"offline"}
    assert found["offline"]["since"] is not None, "offline since it was last seen"
    assert found["offline"]["detail"] == "离线"
    state(app, SPEAKER, online=True)
    assert alarms_of(app, tokens["admin"]) == {}


def test_offline_is_raised_for_a_silent_speaker_without_a_will(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    state(app, SPEAKER, online=True, at=time.time() - 3600)
    assert alarms_of(app, tokens["admin"]) == {}
    with app.extensions["platform"].db.transaction() as session:
        assert receipts.mark_stale_offline(session, 600) == 1
    assert set(alarms_of(app, tokens["admin"])) == {"offline"}


def test_failing_is_raised_after_three_failed_plays_and_cleared_by_one_that_plays(
    county: tuple[Any, dict[str, str]],
) -> None:
    app, tokens = county
    state(app, SPEAKER, online=True)
    clip_id = a_clip(app, tokens["admin"])
    for event in ("failed", "missed"):
        receipt(app, SPEAKER, event, broadcast(app, tokens["admin"], clip_id), "fetch_failed")
    assert alarms_of(app, tokens["admin"]) == {}, "two failures are not yet an alarm"
    receipt(app, SPEAKER, "refused", broadcast(app, tokens["admin"], clip_id), "quiet_hours")
    found = alarms_of(app, tokens["admin"])
    assert set(found) == {"failing"}
    assert found["failing"]["detail"] == "最近 3 次播发均未成功"
    receipt(app, SPEAKER, "finished", broadcast(app, tokens["admin"], clip_id))
    assert alarms_of(app, tokens["admin"]) == {}, "one good play clears it"


def test_rejecting_is_raised_by_a_refused_command_and_clears_after_a_day(
    county: tuple[Any, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, tokens = county
    state(app, SPEAKER, online=True)
    bid = broadcast(app, tokens["admin"], a_clip(app, tokens["admin"]))
    assert alarms_of(app, tokens["admin"]) == {}
    receipt(app, SPEAKER, "rejected", bid, "bad_signature")
    found = alarms_of(app, tokens["admin"])
    assert set(found) == {"rejecting"}
    assert found["rejecting"]["detail"] == "24 小时内拒绝了 1 条指令（可能有伪造或重放）"
    with app.extensions["platform"].db.transaction() as session:
        rejected_at = session.scalars(
            select(AuditEvent.at).where(AuditEvent.action == "speaker.rejected_command")
        ).one()
    # A controllable clock: exactly 24 hours later the rejection still counts, a moment after it does not.
    monkeypatch.setattr(fleet, "utcnow", lambda: rejected_at + timedelta(hours=24))
    assert set(alarms_of(app, tokens["admin"])) == {"rejecting"}
    monkeypatch.setattr(fleet, "utcnow", lambda: rejected_at + timedelta(hours=24, seconds=1))
    assert alarms_of(app, tokens["admin"]) == {}


def test_alarms_are_scoped_and_disabled_speakers_raise_none(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    dalu = "spk-42122420520101-1"
    assert "never_seen" in alarms_of(app, tokens["admin"], dalu)
    assert alarms_of(app, tokens["operator"], dalu) == {}, "黄沙铺镇's operator does not see 大路乡"
    assert "never_seen" in alarms_of(app, tokens["operator"], SPEAKER)

    with app.extensions["platform"].db.transaction() as session:
        session.get(Speaker, SPEAKER).enabled = False
    assert alarms_of(app, tokens["admin"]) == {}


def test_failing_counts_each_speakers_own_latest_plays(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    state(app, SPEAKER, online=True)
    state(app, OTHER, online=True)
    clip_id = a_clip(app, tokens["admin"])
    # Oldest first; the latest three all missed. Neither the first three by id nor by state name are all failures.
    for event in ("failed", "finished", "missed", "missed", "missed"):
        receipt(app, SPEAKER, event, broadcast(app, tokens["admin"], clip_id), "offline")
    assert set(alarms_of(app, tokens["admin"])) == {"failing"}, "the latest three, not any other three"
    receipt(app, OTHER, "finished", broadcast(app, tokens["admin"], clip_id, OTHER))
    assert set(alarms_of(app, tokens["admin"])) == {"failing"}, "another speaker's plays do not count"
    assert alarms_of(app, tokens["admin"], OTHER) == {}


def test_alarms_come_in_speaker_order_for_every_scope(county: tuple[Any, dict[str, str]]) -> None:
    app, tokens = county
    with app.extensions["platform"].db.transaction() as session:
        session.add(Speaker(id="spk-0-late", name="后装音柱", grid_code="42122420520101"))
        user = accounts.create_user(session, "dalu", "dalu-password-1", "operator", "421224205000")
        dalu = accounts.create_token(session, user)
    reply = app.test_client().get("/api/v1/alarms", headers=auth(tokens["admin"]))
    ids = [a["speaker_id"] for a in reply.get_json()["items"]]
    assert ids == sorted(ids)
    assert ids[0] == "spk-0-late"
    mine = app.test_client().get("/api/v1/alarms", headers=auth(dalu)).get_json()["items"]
    assert len(mine) == 13, "大路乡's 12 speakers and the new one, though 黄沙铺镇's come first by id"


def test_the_sweep_judges_only_by_receipts_already_applied(county: tuple[Any, dict[str, str]]) -> None:
    """A backlog of receipts never ends a delivery as missed, nor a speaker as offline, before it is applied."""
    from broadcast.models import Broadcast, Delivery
    from broadcast.worker import sweep

    app, tokens = county
    platform = app.extensions["platform"]
    now = time.time()
    state(app, SPEAKER, online=True, at=now - platform.settings["OFFLINE_AFTER_S"] - 60)  # just past the limit
    bid = broadcast(app, tokens["admin"], a_clip(app, tokens["admin"]))
    with platform.db.transaction() as session:
        session.get(Broadcast, bid).expires_at = now - 60  # ran out a minute ago

    def judged() -> tuple[str, bool]:
        with platform.db.transaction() as session:
            delivery = session.scalar(select(Delivery).where(Delivery.broadcast_id == bid))
            return delivery.state, session.get(Speaker, SPEAKER).online

    sweep(platform, lambda: now - 120)  # the worker's inbox last ran dry two minutes ago: receipts wait
    assert judged() == ("queued", True)
    sweep(platform, time.time)  # caught up: nothing that could say otherwise is waiting
    assert judged() == ("missed", False)
