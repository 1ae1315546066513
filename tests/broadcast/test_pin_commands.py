"""Pins of signed commands: issue, publish and mark sent, supersede, the outbox's re-sends and their back-off."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import insert, select, update

from broadcast import media_urls
from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.models import Broadcast, Clip, Command, Delivery, Region, Speaker
from broadcast.services import commands

SHA = "ab" * 32
GRID = "421224104201010"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An empty, current database with one grid and three speakers in it."""
    database = Database(database_url)
    database.upgrade()
    with database.transaction() as session:
        session.add(Region(code=GRID, name="网格", level="grid", parent_code=None))
        session.flush()
        session.add_all(Speaker(id=f"spk-{n}", name=f"{n}号", grid_code=GRID) for n in (1, 2, 3))
    yield database
    database.dispose()


def a_clip(**fields: Any) -> Clip:
    """A clip row (not stored)."""
    values: dict[str, Any] = {
        "sha256": SHA,
        "format": "opus",
        "mime": "audio/ogg",
        "size_bytes": 1000,
        "duration_ms": 4000,
        "loudness_lufs": -16.0,
        "true_peak_dbtp": -1.0,
        "source": "tts",
        "title": "通知",
    }
    return Clip(**{**values, **fields})


def a_broadcast(clip_id: int = 1, **fields: Any) -> Broadcast:
    """A broadcast row (not stored) that starts now and expires in ten minutes."""
    now = time.time()
    values: dict[str, Any] = {
        "id": 7,
        "clip_id": clip_id,
        "priority": "normal",
        "volume": 70,
        "repeat": 1,
        "targets": [GRID],
        "wire_targets": [f"region:{GRID}"],
        "start_at": now,
        "expires_at": now + 600,
        "status": "sending",
    }
    return Broadcast(**{**values, **fields})


def stored_broadcast(session: Any, *, expires_in: float = 600.0, states: dict[str, str] | None = None) -> int:
    """A stored clip and broadcast with one delivery per speaker (state by speaker id, default queued)."""
    clip = a_clip()
    session.add(clip)
    session.flush()
    item = a_broadcast(clip.id, id=None, expires_at=time.time() + expires_in)
    session.add(item)
    session.flush()
    for speaker, state in (states or {"spk-1": "queued"}).items():
        session.add(Delivery(broadcast_id=item.id, speaker_id=speaker, state=state))
    session.flush()
    return int(item.id)


def stop_body(broadcast_id: str | None = "7") -> dict[str, Any]:
    """A valid stop command's fields."""
    return {"broadcast_id": broadcast_id}


class FakePublisher:
    """Records what it was asked to publish; fails when told to."""

    def __init__(self, *, fail: bool = False, client_id: str | None = "web-1") -> None:
        self.fail = fail
        self.sent: list[str] = []
        if client_id is not None:
            self.client_id = client_id

    def publish(self, command: Command) -> list[str]:
        """Pretend to sign and publish."""
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append(command.command_id)
        return [f"vb/region/{GRID}/cmd"]


# -- titles and play bodies --


def test_short_title_keeps_what_fits_and_cuts_the_rest_with_an_ellipsis() -> None:
    assert commands.short_title(None) is None
    assert commands.short_title("") == ""
    fits = "字" * commands.TITLE_MAX_CHARS
    assert commands.short_title(fits) == fits
    cut = commands.short_title("字" * commands.TITLE_MAX_CHARS + "尾")
    assert cut == "字" * (commands.TITLE_MAX_CHARS - 1) + "…"
    assert len(cut) == commands.TITLE_MAX_CHARS == 200


def test_play_body_names_the_broadcast_and_its_signed_media() -> None:
    item = a_broadcast(repeat=3, volume=55, priority="urgent")
    body = commands.play_body(item, a_clip(), secret="s3", public_url="https://radio.example/", url_ttl_s=60)
    assert set(body) == {
        "broadcast_id", "priority", "media_url", "sha256", "duration_ms", "start_at", "expires_at", "volume",
        "repeat", "title",
    }  # fmt: skip
    assert body["broadcast_id"] == "7"
    assert (body["priority"], body["volume"], body["repeat"], body["title"]) == ("urgent", 55, 3, "通知")
    assert (body["sha256"], body["duration_ms"], body["start_at"]) == (SHA, 4000, item.start_at)
    # the latest start leaves time to play all three repeats before the broadcast expires
    assert body["expires_at"] == pytest.approx(item.expires_at - 12.0, abs=1e-6)
    url = urlsplit(body["media_url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "radio.example", f"/media/{SHA}.opus")
    query = parse_qs(url.query)
    assert media_urls.verify("s3", f"{SHA}.opus", query["e"][0], query["s"][0])
    assert not media_urls.verify("other", f"{SHA}.opus", query["e"][0], query["s"][0])
    commands.check("play", body, [f"region:{GRID}"], issued_at=time.time(), expires_at=item.expires_at)


def test_the_media_url_outlives_the_broadcast_by_an_hour_or_the_configured_ttl() -> None:
    item = a_broadcast()
    for ttl, lasts in ((60, 600 + 3600), (100_000, 100_000)):
        before = time.time()
        body = commands.play_body(item, a_clip(), secret="s", public_url="http://h", url_ttl_s=ttl)
        expires = int(parse_qs(urlsplit(body["media_url"]).query)["e"][0])
        assert before + lasts - 2 <= expires <= time.time() + lasts + 1
        assert body["media_url"].startswith(f"http://h/media/{SHA}.opus?")


def test_a_long_title_is_cut_so_the_speakers_accept_the_command() -> None:
    body = commands.play_body(a_broadcast(), a_clip(title="长" * 300), secret="s", public_url="http://h", url_ttl_s=60)
    assert body["title"] == "长" * 199 + "…"


@pytest.mark.parametrize("priority", ["emergency", "urgent"])
def test_a_small_urgent_clip_rides_inside_the_command(priority: str, tmp_path: Path) -> None:
    media = tmp_path / "clip.opus"
    media.write_bytes(b"\x00\x01opus-bytes")
    size = media.stat().st_size
    body = commands.play_body(
        a_broadcast(priority=priority), a_clip(), secret="s", public_url="http://h", url_ttl_s=60,
        media_file=media, inline_max_bytes=size,
    )  # fmt: skip
    assert base64.b64decode(body["media_b64"]) == b"\x00\x01opus-bytes"
    assert body["media_url"].startswith("http://h/media/"), "the URL stays as the fallback"


@pytest.mark.parametrize(
    ("priority", "max_bytes", "extra"),
    [("normal", 10_000, 0), ("background", 10_000, 0), ("emergency", 0, 0), ("urgent", 5, 1)],
)
def test_other_clips_are_fetched_by_url(priority: str, max_bytes: int, extra: int, tmp_path: Path) -> None:
    media = tmp_path / "clip.opus"
    media.write_bytes(b"x" * (5 + extra))
    body = commands.play_body(
        a_broadcast(priority=priority), a_clip(), secret="s", public_url="http://h", url_ttl_s=60,
        media_file=media, inline_max_bytes=max_bytes,
    )  # fmt: skip
    assert "media_b64" not in body
    no_file = commands.play_body(
        a_broadcast(priority="emergency"), a_clip(), secret="s", public_url="http://h", url_ttl_s=60,
        inline_max_bytes=10_000,
    )  # fmt: skip
    assert "media_b64" not in no_file


def test_an_unreadable_clip_is_not_inlined_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="broadcast.services.commands"):
        body = commands.play_body(
            a_broadcast(priority="emergency"), a_clip(), secret="s", public_url="http://h", url_ttl_s=60,
            media_file=tmp_path / "gone.opus", inline_max_bytes=10_000,
        )  # fmt: skip
    assert "media_b64" not in body
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"clip {SHA[:12]} not inlined: ")
    assert "gone.opus" in message, "the reason is logged"


# -- checking and issuing --


def test_check_refuses_what_every_speaker_would_reject_naming_the_field() -> None:
    now = time.time()
    commands.check("stop", stop_body(), ["speaker:spk-1"], issued_at=now, expires_at=now + 60)
    cases = [
        ("stop", {"broadcast_id": "bad id!"}, ["speaker:spk-1"], "$.broadcast_id"),
        ("stop", stop_body(), [], "$.targets"),
        ("launch", stop_body(), ["speaker:spk-1"], "$.type"),
    ]
    for kind, body, targets, path in cases:
        with pytest.raises(BroadcastError) as caught:
            commands.check(kind, body, targets, issued_at=now, expires_at=now + 60)
        error = caught.value
        assert (error.code, error.kind) == ("invalid_command", "bad_request")
        assert error.details["path"] == path
        assert path in error.en
        assert path in error.zh
        assert error.en.startswith("The command does not match the speaker protocol and was not sent (")
        assert error.zh.startswith("指令不符合终端协议，未发送（")


def test_check_applies_the_per_kind_rules_beyond_the_schema() -> None:
    now = time.time()
    body = commands.play_body(a_broadcast(), a_clip(), secret="s", public_url="http://h", url_ttl_s=60)
    body["title"] = "长" * 201
    with pytest.raises(BroadcastError) as caught:
        commands.check("play", body, ["speaker:spk-1"], issued_at=now, expires_at=now + 60)
    assert caught.value.details["path"] == "$.title"


def test_issue_records_a_command_with_the_next_sequence_number(db: Database) -> None:
    with db.transaction() as session:
        before = time.time()
        first = commands.issue(
            session, kind="stop", body=stop_body(), targets=["speaker:spk-1"], expires_at=before + 60
        )
        second = commands.issue(
            session,
            kind="stop",
            body=stop_body("8"),
            targets=["speaker:spk-2"],
            expires_at=before + 90,
            broadcast_id=None,
        )
        assert second.seq > first.seq > 0
        assert len(first.command_id) == 32
        assert int(first.command_id, 16) >= 0
        assert first.command_id != second.command_id
        ids = (first.seq, second.seq)
    with db.transaction() as session:
        stored = session.get(Command, ids[0])
        assert stored is not None
        assert (stored.kind, stored.broadcast_id, stored.topics) == ("stop", None, [])
        assert stored.body == {"body": stop_body(), "targets": ["speaker:spk-1"]}
        assert before <= stored.issued_at <= time.time()
        assert stored.expires_at == pytest.approx(before + 60, abs=1e-6)
        assert (stored.published_at, stored.superseded_by, stored.attempts) == (None, None, 0)
        assert commands.top_seq(session) == ids[1]


def test_issue_stores_nothing_for_a_command_the_speakers_would_reject(db: Database) -> None:
    with db.transaction() as session:
        with pytest.raises(BroadcastError):
            commands.issue(session, kind="stop", body={"broadcast_id": 7}, targets=["x"], expires_at=time.time() + 60)
        assert session.scalars(select(Command)).all() == []
        assert commands.top_seq(session) == 0


def test_issue_checks_the_command_as_issued_now(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def spy(kind: str, body: dict[str, Any], targets: list[str], *, issued_at: float, expires_at: float) -> None:
        seen.update(kind=kind, body=body, targets=targets, issued_at=issued_at, expires_at=expires_at)

    monkeypatch.setattr(commands, "check", spy)
    with db.transaction() as session:
        command = commands.issue(session, kind="stop", body=stop_body(), targets=["speaker:spk-1"], expires_at=99.0)
        assert seen == {
            "kind": "stop", "body": stop_body(), "targets": ["speaker:spk-1"], "issued_at": command.issued_at,
            "expires_at": 99.0,
        }  # fmt: skip


# -- publishing --


def test_send_marks_the_command_and_the_queued_deliveries_of_its_broadcast_sent(db: Database) -> None:
    with db.transaction() as session:
        mine = stored_broadcast(session, states={"spk-1": "queued", "spk-2": "acknowledged"})
        other = stored_broadcast(session, states={"spk-3": "queued"})
        command = commands.issue(
            session, kind="stop", body=stop_body(str(mine)), targets=["speaker:spk-1"], expires_at=time.time() + 60,
            broadcast_id=mine,
        )  # fmt: skip
    publisher = FakePublisher()
    before = time.time()
    assert commands.send(db, publisher, command, first_resend_s=7.5) is True
    after = time.time()
    assert publisher.sent == [command.command_id]
    with db.transaction() as session:
        stored = session.get(Command, command.seq)
        assert stored is not None
        assert stored.topics == [f"vb/region/{GRID}/cmd"]
        assert stored.attempts == 1
        assert stored.publisher == "web-1"
        assert stored.published_at is not None
        assert before <= stored.published_at <= after
        rows = {(d.broadcast_id, d.speaker_id): d for d in session.scalars(select(Delivery))}
        sent = rows[(mine, "spk-1")]
        assert sent.state == "sent"
        assert sent.next_resend_at == pytest.approx(stored.published_at + 7.5, abs=1e-6)
        assert (rows[(mine, "spk-2")].state, rows[(mine, "spk-2")].next_resend_at) == ("acknowledged", None)
        assert (rows[(other, "spk-3")].state, rows[(other, "spk-3")].next_resend_at) == ("queued", None)


def test_send_resends_after_three_seconds_by_default_and_names_no_publisher_it_does_not_know(db: Database) -> None:
    with db.transaction() as session:
        mine = stored_broadcast(session)
        command = commands.issue(
            session, kind="stop", body=stop_body(str(mine)), targets=["speaker:spk-1"], expires_at=time.time() + 60,
            broadcast_id=mine,
        )  # fmt: skip
    assert commands.send(db, FakePublisher(client_id=None), command)
    with db.transaction() as session:
        stored = session.get(Command, command.seq)
        assert stored is not None
        assert stored.publisher is None
        assert stored.published_at is not None
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.next_resend_at == pytest.approx(stored.published_at + 3.0, abs=1e-6)


def test_a_command_of_no_broadcast_touches_no_delivery(db: Database) -> None:
    with db.transaction() as session:
        stored_broadcast(session)
        command = commands.issue(
            session, kind="stop", body=stop_body(None), targets=["speaker:spk-1"], expires_at=time.time() + 60
        )
    assert commands.send(db, FakePublisher(), command)
    with db.transaction() as session:
        assert session.scalars(select(Delivery.state)).all() == ["queued"]


def test_a_failed_publish_counts_the_attempt_and_leaves_everything_waiting(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with db.transaction() as session:
        mine = stored_broadcast(session)
        command = commands.issue(
            session, kind="stop", body=stop_body(str(mine)), targets=["speaker:spk-1"], expires_at=time.time() + 60,
            broadcast_id=mine,
        )  # fmt: skip
        other = commands.issue(
            session, kind="stop", body=stop_body(), targets=["speaker:spk-1"], expires_at=time.time() + 60
        )
    with caplog.at_level(logging.WARNING, logger="broadcast.services.commands"):
        assert commands.send(db, FakePublisher(fail=True), command) is False
        assert commands.send(db, FakePublisher(fail=True), command) is False
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"command {command.command_id} (seq {command.seq}) not published yet: broker down"
    with db.transaction() as session:
        stored = session.get(Command, command.seq)
        assert stored is not None
        assert (stored.attempts, stored.published_at, stored.topics) == (2, None, [])
        assert session.get(Command, other.seq).attempts == 0  # type: ignore[union-attr]
        assert session.scalars(select(Delivery.state)).all() == ["queued"]
    assert commands.send(db, FakePublisher(), command)
    with db.transaction() as session:
        assert session.get(Command, command.seq).attempts == 3  # type: ignore[union-attr]


# -- superseding and the unpublished --


def test_supersede_copies_the_content_under_a_new_id_and_sequence(db: Database) -> None:
    with db.transaction() as session:
        mine = stored_broadcast(session)
        old = commands.issue(
            session, kind="stop", body=stop_body(str(mine)), targets=["speaker:spk-1"], expires_at=1e10,
            broadcast_id=mine,
        )  # fmt: skip
        new = commands.supersede(session, old)
        assert new.seq > old.seq
        assert new.command_id != old.command_id
        assert old.superseded_by == new.seq
        assert new.superseded_by is None
        assert (new.kind, new.body, new.expires_at, new.broadcast_id) == ("stop", old.body, 1e10, mine)
        assert new.published_at is None


def test_a_command_is_too_old_once_half_the_replay_window_was_issued_after_it() -> None:
    assert commands.SAFE_SEQ_AGE == 512
    command = Command(seq=100)
    assert not commands.too_old(command, 100)
    assert not commands.too_old(command, 100 + 511)
    assert commands.too_old(command, 100 + 512)
    assert commands.too_old(command, 100 + 5000)


def test_unpublished_lists_the_waiting_unexpired_unsuperseded_commands_oldest_first(db: Database) -> None:
    now = 1_000_000.0

    def add(session: Any, **fields: Any) -> int:
        values: dict[str, Any] = {"kind": "stop", "body": {}, "issued_at": now - 30, "expires_at": now + 60}
        values.update(fields)
        command = Command(command_id=f"c{len(session.new)}-{time.monotonic_ns()}", **values)
        session.add(command)
        session.flush()
        return int(command.seq)

    with db.transaction() as session:
        waiting = add(session)
        add(session, published_at=now - 20)
        add(session, superseded_by=99)
        add(session, expires_at=now)  # expires this very second
        add(session, issued_at=now - 10)  # exactly `older_than_s` old: not yet
        older = add(session, issued_at=now - 10.5)
        add(session, issued_at=now - 5)
    with db.transaction() as session:
        found = commands.unpublished(session, older_than_s=10, now=now)
        assert [c.seq for c in found] == [waiting, older]
        assert commands.unpublished(session, older_than_s=10) == [], "now defaults to the clock: all expired"


# -- the outbox --


def test_due_resends_are_the_unacknowledged_and_overdue_deliveries_of_live_broadcasts(db: Database) -> None:
    now = time.time()
    with db.transaction() as session:
        live = stored_broadcast(session, states={"spk-1": "sent", "spk-2": "acknowledged", "spk-3": "finished"})
        gone = stored_broadcast(session, expires_in=-100, states={"spk-1": "sent"})
        rows = {(d.broadcast_id, d.speaker_id): d for d in session.scalars(select(Delivery))}
        rows[(live, "spk-1")].next_resend_at = now
        rows[(live, "spk-1")].resends = 2
        rows[(live, "spk-2")].next_resend_at = now - 5
        rows[(live, "spk-3")].next_resend_at = now - 9
        rows[(gone, "spk-1")].next_resend_at = now - 9
        ids = {key: row.id for key, row in rows.items()}
    with db.transaction() as session:
        due = commands.due_resends(session, now)
        assert due == [(ids[(live, "spk-2")], "spk-2", live, 0), (ids[(live, "spk-1")], "spk-1", live, 2)]
        assert commands.due_resends(session, now - 1) == [(ids[(live, "spk-2")], "spk-2", live, 0)]
        assert commands.due_resends(session, now, limit=1) == due[:1]


def test_playing_deliveries_are_asked_again_when_overdue(db: Database) -> None:
    now = time.time()
    with db.transaction() as session:
        live = stored_broadcast(session, states={"spk-1": "playing", "spk-2": "queued"})
        for delivery in session.scalars(select(Delivery)):
            delivery.next_resend_at = now - 1
    with db.transaction() as session:
        assert [d[1] for d in commands.due_resends(session, now)] == ["spk-1"]
        assert commands.RESENDING == ("sent", "acknowledged", "playing")
        assert live


def test_live_commands_are_the_current_published_unexpired_play_commands(db: Database) -> None:
    now = time.time()
    with db.transaction() as session:
        a = stored_broadcast(session)
        b = stored_broadcast(session)
        c = stored_broadcast(session)

        def add(broadcast_id: int, **fields: Any) -> Command:
            values: dict[str, Any] = {
                "kind": "play",
                "published_at": now - 1,
                "issued_at": now - 2,
                "expires_at": now + 60,
            }
            values.update(fields)
            command = Command(command_id=f"c-{time.monotonic_ns()}", broadcast_id=broadcast_id, body={}, **values)
            session.add(command)
            session.flush()
            return command

        add(a)
        newest_a = add(a)
        add(b, kind="stop")
        add(b, published_at=None)
        add(b, superseded_by=1)
        add(b, expires_at=now)
        only_c = add(c)
        add(None)  # type: ignore[arg-type]
        expected = {a: newest_a.command_id, c: only_c.command_id}
    with db.transaction() as session:
        found = commands.live_commands(session, {a, b, c}, now)
        assert {k: v.command_id for k, v in found.items()} == expected
        assert commands.live_commands(session, {b}, now) == {}
        assert commands.live_commands(session, set(), now) == {}


def test_backoff_doubles_from_the_first_delay_up_to_the_cap() -> None:
    assert [commands.backoff(n, 3.0, 1000.0) for n in range(6)] == [3.0, 6.0, 12.0, 24.0, 48.0, 96.0]
    assert commands.backoff(9, 3.0, 60.0) == 60.0
    assert commands.backoff(16, 1.0, 1e12) == 65536.0
    assert commands.backoff(40, 1.0, 1e12) == 65536.0, "the exponent stops growing at 16"


def test_schedule_next_counts_a_resend_and_backs_off_by_how_many_came_before(db: Database) -> None:
    now = 5000.0
    with db.transaction() as session:
        live = stored_broadcast(session, states={"spk-1": "sent", "spk-2": "playing", "spk-3": "sent"})
        rows = {d.speaker_id: d for d in session.scalars(select(Delivery))}
        rows["spk-2"].resends = 3
        due = [(rows[s].id, s, live, rows[s].resends) for s in ("spk-1", "spk-2", "spk-3")]
        rows["spk-3"].state = "finished"  # acknowledged and done in between
        rows["spk-3"].next_resend_at = None
    with db.transaction() as session:
        commands.schedule_next(session, due, now, first_s=2.0, max_s=10.0)
    with db.transaction() as session:
        after = {d.speaker_id: (d.resends, d.next_resend_at) for d in session.scalars(select(Delivery))}
    assert after == {"spk-1": (1, now + 4.0), "spk-2": (4, now + 10.0), "spk-3": (0, None)}


def test_the_media_url_lasts_exactly_an_hour_past_the_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    monkeypatch.setattr(commands.time, "time", lambda: now)
    body = commands.play_body(
        a_broadcast(expires_at=now + 600), a_clip(), secret="s", public_url="http://h", url_ttl_s=60
    )
    assert parse_qs(urlsplit(body["media_url"]).query)["e"] == [str(int(now) + 4200)]


def test_only_trailing_slashes_are_dropped_from_the_public_url() -> None:
    body = commands.play_body(a_broadcast(), a_clip(), secret="s", public_url="https://h/BOX//", url_ttl_s=60)
    assert body["media_url"].startswith(f"https://h/BOX/media/{SHA}.opus?")


def test_inlining_is_off_unless_a_size_is_given_and_the_size_is_inclusive(tmp_path: Path) -> None:
    one = tmp_path / "one.opus"
    one.write_bytes(b"1")
    empty = tmp_path / "empty.opus"
    empty.write_bytes(b"")
    item = a_broadcast(priority="emergency")

    def body(media: Path, **limit: int) -> dict[str, Any]:
        return commands.play_body(
            item, a_clip(), secret="s", public_url="http://h", url_ttl_s=60, media_file=media, **limit
        )

    assert "media_b64" not in body(one)
    assert "media_b64" not in body(empty, inline_max_bytes=0)
    assert body(one, inline_max_bytes=1)["media_b64"] == base64.b64encode(b"1").decode()


def test_the_outbox_takes_at_most_5000_deliveries_a_pass_most_overdue_first(db: Database) -> None:
    now = time.time()
    with db.transaction() as session:
        live = stored_broadcast(session, states={})
        ids = [f"spk-x{n}" for n in range(5001)]
        session.execute(insert(Speaker), [{"id": s, "name": s, "grid_code": GRID} for s in ids])
        session.execute(
            insert(Delivery),
            [
                {"broadcast_id": live, "speaker_id": s, "state": "sent", "next_resend_at": now - n}
                for n, s in enumerate(ids)
            ],
        )
    with db.transaction() as session:
        due = commands.due_resends(session, now)
    assert len(due) == 5000
    assert (due[0][1], due[-1][1]) == ("spk-x5000", "spk-x1"), "the longest overdue go first"


def test_a_broadcast_expiring_this_very_second_is_not_resent(db: Database) -> None:
    now = 1_000_000.0
    with db.transaction() as session:
        live = stored_broadcast(session, states={"spk-1": "sent"})
        session.get(Broadcast, live).expires_at = now  # type: ignore[union-attr]
        session.scalars(select(Delivery)).one().next_resend_at = now - 1
    with db.transaction() as session:
        assert commands.due_resends(session, now) == []
        assert len(commands.due_resends(session, now - 0.5)) == 1


def test_unpublished_hands_out_at_most_500_a_pass_oldest_first(db: Database) -> None:
    now = 1_000_000.0
    with db.transaction() as session:
        session.execute(
            insert(Command),
            [
                {"command_id": f"c{n}", "kind": "stop", "body": {}, "topics": [], "issued_at": now - 60,
                 "expires_at": now + 60}
                for n in range(501)
            ],
        )  # fmt: skip
    with db.transaction() as session:
        found = commands.unpublished(session, older_than_s=10, now=now)
        top = commands.top_seq(session)
    assert len(found) == 500
    assert [c.seq for c in found] == sorted(c.seq for c in found)
    assert found[-1].seq == top - 1, "the newest waits for the next pass"


def test_the_newest_command_wins_even_when_an_older_row_was_written_last(db: Database) -> None:
    now = time.time()
    with db.transaction() as session:
        mine = stored_broadcast(session)
        rows = [
            Command(
                command_id=f"c{n}", kind="play", broadcast_id=mine, body={}, issued_at=now - 9, expires_at=now + 60,
                published_at=now - 5,
            )
            for n in range(3)
        ]  # fmt: skip
        session.add_all(rows)
        session.flush()
        newest = max(rows, key=lambda c: c.seq).command_id
    with db.transaction() as session:
        # rewritten rows move to the end of a PostgreSQL table: the scan order is no longer the issue order
        session.execute(update(Command).where(Command.command_id != newest).values(published_at=now - 4))
        session.execute(update(Command).where(Command.command_id == "c0").values(published_at=None))
    with db.transaction() as session:
        assert commands.live_commands(session, {mine}, now)[mine].command_id == newest
        waiting = commands.unpublished(session, older_than_s=1, now=now)
        assert [c.command_id for c in waiting] == ["c0"]
    with db.transaction() as session:
        session.execute(update(Command).values(published_at=None))
        session.execute(update(Command).where(Command.command_id == "c0").values(attempts=9))
    with db.transaction() as session:
        waiting = commands.unpublished(session, older_than_s=1, now=now)
        assert [c.command_id for c in waiting] == ["c0", "c1", "c2"], "oldest first, as issued"
