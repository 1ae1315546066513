"""Backup and restore: what was saved comes back, and new commands number above anything issued before."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from broadcast.backup import SEQUENCE_JUMP
from broadcast.cli import main
from broadcast.models import Broadcast, Clip, Command, Region
from broadcast.services import commands
from tests.broadcast.conftest import HUANGSHA, seed_county
from tests.requires import need


def _issue(app: Any, n: int) -> list[int]:
    with app.extensions["platform"].db.transaction() as session:
        issued = [
            commands.issue(session, kind="ping", body={}, targets=[f"region:{HUANGSHA}"], expires_at=time.time() + 60)
            for _ in range(n)
        ]
        return [c.seq for c in issued]


@pytest.fixture
def cli_env(app: Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI pointed at the app's instance and database."""
    platform = app.extensions["platform"]
    if not platform.settings["DATABASE_URL"].startswith("sqlite"):
        need(__import__("shutil").which("pg_dump"), "pg_dump (Debian postgresql-client) for PostgreSQL backups")
    monkeypatch.setenv("BROADCAST_INSTANCE", str(platform.instance))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", platform.settings["DATABASE_URL"])
    monkeypatch.setenv("BROADCAST_MQTT_URL", platform.settings["MQTT_URL"])
    return CliRunner()


def test_backup_restore_round_trip(app: Any, cli_env: CliRunner, tmp_path: Path) -> None:
    seed_county(app)
    platform = app.extensions["platform"]
    media_file = Path(platform.settings["MEDIA_DIR"]) / "ab" / "ab12.mp3"
    media_file.parent.mkdir(parents=True, exist_ok=True)
    media_file.write_bytes(b"ID3 not really audio")
    before = _issue(app, 3)
    archive = tmp_path / "backup.tar.gz"

    made = cli_env.invoke(main, ["backup", str(archive)])
    assert made.exit_code == 0, made.output
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "instance/keys/server_ed25519.pem", "instance/secret_key", "media/ab/ab12.mp3"} <= names

    # life goes on after the backup: two more commands, a renamed township, a lost media file
    after = _issue(app, 2)
    with platform.db.transaction() as session:
        session.get(Region, HUANGSHA).name = "改过的名字"
    media_file.unlink()
    platform.db.dispose()

    restored = cli_env.invoke(main, ["restore", str(archive)])
    assert restored.exit_code == 0, restored.output
    with platform.db.transaction() as session:
        assert session.get(Region, HUANGSHA).name == "黄沙铺镇"
        assert session.scalar(select(func.max(Command.seq))) == max(before)
    assert media_file.read_bytes() == b"ID3 not really audio"
    (next_seq,) = _issue(app, 1)
    assert next_seq > max(after)  # never a number a speaker may have seen: no replay rejections
    assert next_seq >= max(before) + SEQUENCE_JUMP
    # speakers never start a broadcast id twice: new broadcasts number above any issued before the restore
    assert _new_broadcast_id(app) > SEQUENCE_JUMP
    verify = cli_env.invoke(main, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output  # the restored trail, with the restore itself recorded


def _new_broadcast_id(app: Any) -> int:
    with app.extensions["platform"].db.transaction() as session:
        clip = Clip(
            sha256="1" * 64, format="mp3", mime="audio/mpeg", size_bytes=1, duration_ms=1, loudness_lufs=-16.0,
            true_peak_dbtp=-2.0, source="tts",
        )  # fmt: skip
        session.add(clip)
        session.flush()
        item = Broadcast(
            clip_id=clip.id, priority="normal", volume=50, targets=[], wire_targets=[], start_at=0.0, expires_at=0.0
        )
        session.add(item)
        session.flush()
        return item.id


def test_restore_refuses_garbage_and_changes_nothing(app: Any, cli_env: CliRunner, tmp_path: Path) -> None:
    seed_county(app)
    bogus = tmp_path / "bogus.tar.gz"
    with tarfile.open(bogus, "w:gz") as tar:
        tar.add(__file__, arcname="manifest.json")
    result = cli_env.invoke(main, ["restore", str(bogus)])
    assert result.exit_code == 2
    assert "not a village-broadcast backup" in result.output
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Region, HUANGSHA).name == "黄沙铺镇"
