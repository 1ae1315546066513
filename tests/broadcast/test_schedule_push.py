"""Schedule snapshots: who gets one, what is in it, and sequence numbers taken in small published batches."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import Command
from broadcast.services import schedule_push
from tests.broadcast.conftest import HUANGSHA, HUANGSHA_VILLAGE, auth


class FakePublisher:
    """Records what would go to the broker and when (the broker's own behaviour is covered in e2e tests)."""

    client_id = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[int, float, Command]] = []

    def publish(self, command: Command) -> list[str]:
        """Remember the command and the moment it was handed over."""
        self.sent.append((command.seq, time.time(), command))
        return [f"speaker/{command.body['targets'][0]}"]


@pytest.fixture
def fake(app: Any, monkeypatch: pytest.MonkeyPatch) -> FakePublisher:
    """The platform's broker connection replaced by a recorder."""
    publisher = FakePublisher()
    monkeypatch.setattr(app.extensions["platform"], "messenger", lambda: publisher)
    return publisher


def _schedule(app: Any, tokens: dict[str, str], target: str, in_s: float) -> int:
    client = app.test_client()
    clip = client.post("/api/v1/clips", json={"text": "明天停水。"}, headers=auth(tokens["admin"])).get_json()
    body = {"clip_id": clip["id"], "targets": [target], "start_at": time.time() + in_s}
    return client.post("/api/v1/broadcasts", json=body, headers=auth(tokens["admin"])).get_json()["id"]


def test_each_speaker_gets_its_upcoming_plays_once(app: Any, tokens: dict[str, str], fake: FakePublisher) -> None:
    platform = app.extensions["platform"]
    state = schedule_push.PushState()
    soon = _schedule(app, tokens, HUANGSHA, 3600)
    later = _schedule(app, tokens, HUANGSHA_VILLAGE, 7200)
    _schedule(app, tokens, HUANGSHA, 30)  # inside the minimum lead: travels in its own command only
    fake.sent.clear()  # the broadcasts' own play commands
    assert schedule_push.push(platform, state) == 12
    items = {c.body["targets"][0]: [i["item_id"] for i in c.body["body"]["items"]] for _, _, c in fake.sent}
    assert items["speaker:spk-42122410420101-1"] == [f"b{soon}", f"b{later}"]
    assert items["speaker:spk-42122410420201-1"] == [f"b{soon}"]
    play = fake.sent[0][2].body["body"]["items"][0]["play"]
    assert play["expires_at"] > play["start_at"]
    assert "/media/" in play["media_url"]
    assert schedule_push.push(platform, state) == 0  # nothing changed
    state.resync.add("spk-42122410420101-1")  # it came back online
    assert schedule_push.push(platform, state) == 1


def test_sequence_numbers_are_published_batch_by_batch(
    app: Any, tokens: dict[str, str], fake: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule_push, "SEQ_BATCH", 5)
    platform = app.extensions["platform"]
    _schedule(app, tokens, "421224000000", 3600)
    fake.sent.clear()
    assert schedule_push.push(platform, schedule_push.PushState()) == 24
    with platform.db.transaction() as session:
        issued = {c.seq: c.issued_at for c in session.scalars(select(Command).where(Command.kind == "schedule"))}
    for seq, published_at, _ in fake.sent:
        # no number more than one batch ahead was taken before this one was on its way
        assert all(issued_at >= published_at for s, issued_at in issued.items() if s >= seq + 5)
