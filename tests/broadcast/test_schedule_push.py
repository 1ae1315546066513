"""Schedule snapshots: who gets one, what is in it, and sequence numbers taken in small published batches."""

from __future__ import annotations

import threading
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
    state.came_online("spk-42122410420101-1")
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


def test_a_speaker_back_online_while_a_push_runs_is_sent_a_snapshot_at_the_next_push(
    app: Any, tokens: dict[str, str], fake: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipt thread notes a speaker online while the worker's push is half-way: it is not lost."""
    platform = app.extensions["platform"]
    state = schedule_push.PushState()
    _schedule(app, tokens, HUANGSHA, 3600)
    fake.sent.clear()
    digest, injected = schedule_push._digest, []

    def digest_while_the_receipt_thread_notes_a_speaker(entries: list[dict[str, Any]]) -> str:
        """Fault injection: the other thread runs between two of the push's steps (here, once, mid-loop)."""
        if not injected:
            thread = threading.Thread(target=state.came_online, args=("spk-42122410420101-1",))
            thread.start()
            thread.join()
            injected.append(True)
        return digest(entries)

    monkeypatch.setattr(schedule_push, "_digest", digest_while_the_receipt_thread_notes_a_speaker)
    assert schedule_push.push(platform, state) == 12
    assert injected
    fake.sent.clear()
    assert schedule_push.push(platform, state) == 1
    assert [c.body["targets"] for _, _, c in fake.sent] == [["speaker:spk-42122410420101-1"]]
