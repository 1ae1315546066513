"""Pin: the audit trail is append-only at the database (UPDATE and DELETE refused), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from broadcast.models import AuditEvent, User
from broadcast.services import audit


def engine_of(app: Any) -> Any:
    """The app's database engine."""
    return app.extensions["platform"].db.engine


def triggers(app: Any) -> set[str]:
    """Names of the triggers on audit_events, as the migration left them."""
    engine = engine_of(app)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal"
        return set(conn.scalars(text(query)))


def _attempt_in_transaction(db: Any, attempt: Callable[[Session], object]) -> None:
    """Run one change in its own transaction, flushed so the database sees it."""
    with db.transaction() as session:
        attempt(session)
        session.flush()


def test_the_migration_installs_the_guards(app: Any) -> None:
    if engine_of(app).dialect.name == "sqlite":
        assert triggers(app) == {"audit_events_no_update", "audit_events_no_delete"}
    else:
        assert triggers(app) == {"audit_events_append_only"}


def test_events_are_added_but_never_changed_or_removed(app: Any) -> None:
    db = app.extensions["platform"].db
    with db.transaction() as session:
        event = audit.record(session, "tester", "test.pinned", object_type="x", object_id=1)
        session.flush()
        event_id = event.id
    with db.transaction() as session:
        # Positive first: the same session may change other tables, and reads the event back.
        session.execute(update(User).where(User.username == "admin").values(active=True))
        assert session.get(AuditEvent, event_id).action == "test.pinned"
    attempts: dict[str, Callable[[Session], object]] = {
        "orm update": lambda s: setattr(s.get(AuditEvent, event_id), "action", "test.forged"),
        "orm delete": lambda s: s.delete(s.get(AuditEvent, event_id)),
        "bulk update": lambda s: s.execute(update(AuditEvent).values(actor="someone else")),
        "bulk delete": lambda s: s.execute(delete(AuditEvent)),
        "raw update": lambda s: s.execute(text("UPDATE audit_events SET detail = NULL")),
        "raw delete": lambda s: s.execute(text("DELETE FROM audit_events WHERE id = :i"), {"i": event_id}),
    }
    with db.transaction() as session:
        before = [(e.id, e.actor, e.action) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert len(before) >= 2, "initialization is audited too"
    for label, attempt in attempts.items():
        with pytest.raises(DBAPIError, match="append-only"):
            _attempt_in_transaction(db, attempt)
        with db.transaction() as session:
            after = [(e.id, e.actor, e.action) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert after == before, label
