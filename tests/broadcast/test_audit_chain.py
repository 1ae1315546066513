"""The audit chain names the first entry edited, deleted or inserted behind the app's back, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, text

from broadcast.cli import main
from broadcast.services import audit, audit_chain


def _write(app: Any, n: int, actor: str = "admin") -> None:
    with app.extensions["platform"].db.transaction() as session:
        for i in range(n):
            audit.record(session, actor, "broadcast.create", object_type="broadcast", object_id=i, regions=["4212"])


def _ids(app: Any) -> list[int]:
    with app.extensions["platform"].db.engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM audit_events ORDER BY id")).scalars())


def _behind_the_apps_back(app: Any, work: Callable[[Connection], None]) -> None:
    """Drop the append-only triggers, tamper, and put the triggers back, as an intruder with DB access would."""
    engine = app.extensions["platform"].db.engine
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        work(conn)
        if sqlite:
            for verb in ("UPDATE", "DELETE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                        "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
                    )
                )
        else:
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))


def _verify(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    platform = app.extensions["platform"]
    monkeypatch.setenv("BROADCAST_INSTANCE", str(platform.instance))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", platform.settings["DATABASE_URL"])
    return CliRunner().invoke(main, ["audit", "verify"])


def test_untouched_chain_verifies(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(app, 5)
    result = _verify(app, monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"audit chain whole: {len(_ids(app))} entries" in result.output  # the 5 and those of the set-up


@pytest.mark.parametrize(
    ("tamper", "victim_index", "problem"),
    [
        ("UPDATE audit_events SET actor = 'someone-else', address = '10.0.0.9' WHERE id = :id", 3, "content"),
        ("DELETE FROM audit_events WHERE id = :id", 3, "removed"),
        ("UPDATE audit_events SET detail = NULL WHERE id = :id", 0, "content"),
    ],
)
def test_tampering_is_named(
    app: Any, monkeypatch: pytest.MonkeyPatch, tamper: str, victim_index: int, problem: str
) -> None:
    _write(app, 5)
    assert _verify(app, monkeypatch).exit_code == 0
    ids = _ids(app)
    victim = ids[victim_index]
    _behind_the_apps_back(app, lambda conn: conn.execute(text(tamper), {"id": victim}))
    result = _verify(app, monkeypatch)
    assert result.exit_code == 1
    named = victim if "DELETE" not in tamper else ids[victim_index + 1]  # a deletion shows at the next entry
    assert f"entry id {named}:" in result.output
    assert problem in result.output


def test_inserted_entry_is_named(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(app, 3)
    _behind_the_apps_back(
        app,
        lambda conn: conn.execute(
            text("INSERT INTO audit_events (at, actor, action) VALUES (CURRENT_TIMESTAMP, 'ghost', 'broadcast.create')")
        ),
    )
    _write(app, 1)  # the app goes on writing after the forged row
    result = _verify(app, monkeypatch)
    assert result.exit_code == 1
    assert f"entry id {_ids(app)[-2]}:" in result.output


def test_forged_link_without_the_key_is_named(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An intruder who recomputes the chain without the instance's key still fails verification."""
    _write(app, 2)
    ids = _ids(app)
    forged_key = audit_chain.derive_key("guessed")

    def rehash(conn: Connection) -> None:
        from sqlalchemy.orm import Session

        from broadcast.models import AuditEvent

        with Session(bind=conn) as session:
            entry = session.get(AuditEvent, ids[-1])
            entry.actor = "ghost"
            entry.entry_hash = audit_chain.entry_digest(forged_key, entry.prev_hash, entry)
            session.flush()
            conn.execute(text("UPDATE audit_chain_head SET last_hash = :h"), {"h": entry.entry_hash})

    _behind_the_apps_back(app, rehash)
    result = _verify(app, monkeypatch)
    assert result.exit_code == 1
    assert f"entry id {ids[-1]}:" in result.output


def test_concurrent_writers_keep_one_chain(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for _ in range(10):
                app.extensions["platform"].db.run(
                    lambda s, n=name: audit.record(s, n, "broadcast.create", object_type="broadcast")
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = _verify(app, monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"audit chain whole: {len(_ids(app))} entries" in result.output
