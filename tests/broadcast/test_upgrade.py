"""Upgrades: a database made by the first migration, with data in it, reaches head and keeps the data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import text

from broadcast.cli import main
from broadcast.db import Database, alembic_config, schema_head
from broadcast.errors import BroadcastError


def _at_first_revision(url: str) -> Database:
    database = Database(url)
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO regions (code, name, level, parent_code, created_at) VALUES "
                "('421224000000', '通山县', 'county', NULL, :at), "
                "('421224104000', '黄沙铺镇', 'township', '421224000000', :at)"
            ),
            {"at": datetime.now(UTC)},
        )
    return database


def test_upgrade_from_the_first_migration_keeps_data(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _at_first_revision(database_url)
    assert database.revision() == "0001"
    with pytest.raises(BroadcastError, match="broadcast db upgrade"):
        database.require_current()

    monkeypatch.setenv("BROADCAST_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", database_url)
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"0001 → {schema_head()}" in first.output
    database.require_current()
    with database.engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM regions ORDER BY code")).scalars().all()
    assert names == ["通山县", "黄沙铺镇"]

    again = runner.invoke(main, ["db", "upgrade"])  # idempotent
    assert again.exit_code == 0, again.output
    assert "already current" in again.output
    status = runner.invoke(main, ["db", "status"])
    assert status.exit_code == 0
    assert schema_head() in status.output
    database.dispose()


def test_processes_refuse_an_old_schema(tmp_path: Path, database_url: str, monkeypatch: Any) -> None:
    database = _at_first_revision(database_url)
    monkeypatch.setenv("BROADCAST_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", database_url)
    from broadcast import create_app

    with pytest.raises(BroadcastError, match="broadcast db upgrade"):
        create_app()
    status = CliRunner().invoke(main, ["db", "status"])
    assert status.exit_code == 1
    database.dispose()
