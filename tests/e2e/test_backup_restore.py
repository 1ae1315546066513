"""Back up a running instance, broadcast twice more, restore: every speaker plays the next broadcast, nothing is
refused as a replay and no forgery alarm is raised (both databases, real worker and agents)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from broadcast.cli import main
from broadcast.models import Delivery, Speaker
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.e2e.procs import timeline, wait_for

SPEAKERS = ("spk-42122410420101-1", "spk-42122410420101-2")


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """The stack on each database, with two real agents and a worker."""
    stack = server_stack(tmp_path, database_url)
    yield stack
    stop_stack(stack)


def _cli(server: Server, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _finished(server: Server, broadcast_id: int) -> bool:
    return all(server.delivery(broadcast_id, s).state == "finished" for s in SPEAKERS)


def _plays(server: Server, speaker_id: str) -> list[str]:
    return [e["broadcast_id"] for e in timeline(server.sink(speaker_id)) if e["event"] == "finished"]


def test_after_a_restore_every_speaker_plays_the_next_broadcast(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for speaker_id in SPEAKERS:
        server.agent(speaker_id)
    worker = server.worker()
    wait_for(lambda: all(server.online(s) for s in SPEAKERS), 60, "both agents online")
    first = server.broadcast()
    wait_for(lambda: _finished(server, first), 90, "the first notice to finish")

    archive = tmp_path / "backup.tar.gz"
    _cli(server, monkeypatch, "backup", str(archive))
    later = [server.broadcast(), server.broadcast()]  # speakers see sequence numbers the backup never knew
    for broadcast_id in later:
        wait_for(lambda b=broadcast_id: _finished(server, b), 90, f"notice {broadcast_id} to finish")

    worker.stop(signal.SIGTERM)
    server.platform.db.dispose()
    _cli(server, monkeypatch, "restore", str(archive))
    server.platform.db.dispose()
    server.worker("worker-after-restore")

    after = server.broadcast()
    assert after > max(later)  # a broadcast id no speaker has played
    wait_for(lambda: _finished(server, after), 90, "every speaker to play the broadcast after the restore")
    for speaker_id in SPEAKERS:
        assert _plays(server, speaker_id) == [str(b) for b in (first, *later, after)]
    with server.platform.db.transaction() as session:
        assert session.scalars(select(Delivery).where(Delivery.state == "rejected")).all() == []
        for speaker_id in SPEAKERS:
            assert session.get(Speaker, speaker_id).rejected_count == 0  # no forgery alarm
