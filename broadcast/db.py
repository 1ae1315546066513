"""Database engine, sessions (one per request or job) and migrations."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from broadcast.errors import BroadcastError
from broadcast.write_gate import WriteGate

logger = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
GATE_TIMEOUT_S = 15.0  # as long as SQLite's own busy timeout


def alembic_config() -> Config:
    """The Alembic configuration shipped inside the package (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def schema_head() -> str:
    """The newest migration revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def is_transient(exc: OperationalError) -> bool:
    """Deadlocks, serialization failures and busy SQLite files: worth one more try."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001", "55P03") or "database is locked" in str(exc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web threads read while the receipt consumer writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        self.url = url
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: this process's short write transactions (`run`) take turns in arrival order.
        self.gate = WriteGate() if url.startswith("sqlite") else None

    def session(self) -> Session:
        """A new session; the caller closes it."""
        return self.sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error and always closes."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def run(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run `work` in its own transaction, retrying when the database reports a deadlock or a lock timeout."""
        for attempt in range(1, attempts + 1):
            try:
                with self._turn(), self.transaction() as session:
                    return work(session)
            except OperationalError as exc:
                if attempt == attempts or not is_transient(exc):
                    raise
                logger.info("transient database conflict (attempt %d): %s", attempt, str(exc).splitlines()[0])
                time.sleep(0.05 * attempt + random.random() * 0.05)
        raise AssertionError("unreachable")

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if self.gate is None:
            yield
            return
        with self.gate.held(GATE_TIMEOUT_S) as got:
            if not got:
                logger.warning("waited %.0f s for this process's SQLite writers; writing unqueued", GATE_TIMEOUT_S)
            yield

    def is_initialized(self) -> bool:
        """True when the schema exists (migrations have run)."""
        return inspect(self.engine).has_table("alembic_version")

    def upgrade(self) -> None:
        """Run every migration up to the newest one (idempotent: a current schema is left as it is)."""
        config = alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        logger.info("database schema is current")

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        if not self.is_initialized():
            return None
        with self.engine.connect() as connection:
            return connection.scalar(text("SELECT version_num FROM alembic_version"))

    def require_current(self) -> None:
        """Refuse to work on a schema older (or newer) than this code's, naming the command that fixes it."""
        current, head = self.revision(), schema_head()
        if current != head:
            raise BroadcastError(
                "schema_outdated",
                f"数据库结构版本为 {current}，本程序需要 {head}：请先运行 `broadcast db upgrade`。",
                f"The database schema is at {current}; this code needs {head}: run `broadcast db upgrade` first.",
                kind="unavailable",
            )

    def dispose(self) -> None:
        """Close every pooled connection (before a fork, at shutdown)."""
        self.engine.dispose()
