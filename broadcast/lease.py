"""Who may work: the worker lease (one active worker per deployment) and the instance lock (one `broadcast run`).

The lease is a PostgreSQL advisory lock held by a dedicated connection on PostgreSQL, and a file lock in the
instance folder on SQLite. Either way the operating system or the database frees it the moment its holder
dies (even by kill -9), and a standby that polls takes it over. The scheduler reuses the same lease: check
`lease.held` before doing work that only one process may do.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from broadcast.errors import BroadcastError

logger = logging.getLogger(__name__)
CHECK_EVERY_S = 1.0  # how often `held` asks PostgreSQL whether the lease connection still lives


def _advisory_key(name: str, url: str, scope: str) -> int:
    """A signed 64-bit advisory-lock key for this lease (advisory locks are per database, not per schema)."""
    digest = hashlib.sha256(f"village-broadcast:{name}:{url}:{scope}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _FileLock:
    """An exclusive `flock` on a file that records the holder's pid; the kernel frees it when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; True when this process now holds it."""
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> int | None:
        """The pid written by the current holder, if any."""
        try:
            first = self.path.read_text().split()
        except OSError:
            return None
        return int(first[0]) if first and first[0].isdigit() else None

    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fh is not None

    def release(self) -> None:
        """Let go of the lock."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class _AdvisoryLock:
    """`pg_try_advisory_lock` on a connection of its own, kept open for as long as the lease is held."""

    def __init__(self, url: str, key: int, label: str) -> None:
        self.key = key
        self.label = label
        # The holder's pid in pg_stat_activity.application_name tells an operator (and `holder`) who works.
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": f"{label}:{os.getpid()}"},
        )
        self._conn: Any = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take the advisory lock without waiting; True when this process now holds it."""
        with self._lock:
            if self._conn is not None:
                return True
            conn = self._engine.connect()
            try:
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            except Exception:
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            self._checked = time.monotonic()
            return True

    def holder(self) -> int | None:
        """The pid of the process holding the lock (any host), from its connection's application name."""
        query = text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
        )
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        with self._engine.connect() as conn:
            name = conn.execute(query, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).scalar()
        tail = str(name or "").rpartition(":")[2]
        return int(tail) if tail.isdigit() else None

    def held(self) -> bool:
        """True while the lease connection lives (checked at most once a second); a dead one loses the lease."""
        with self._lock:
            if self._conn is None:
                return False
            if time.monotonic() - self._checked < CHECK_EVERY_S:
                return True
            try:
                self._conn.execute(text("SELECT 1"))
            except Exception as exc:
                logger.error("the lease connection died, the lease is lost: %s", exc)
                self._drop()
                return False
            self._checked = time.monotonic()
            return True

    def _drop(self) -> None:
        try:
            self._conn.invalidate()
            self._conn.close()
        except Exception:  # already broken; nothing more to free
            logger.debug("closing the lease connection failed", exc_info=True)
        self._conn = None

    def release(self) -> None:
        """Unlock and close the lease connection."""
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                self._conn.close()
            except Exception:  # closing the connection frees the lock anyway
                logger.debug("unlock failed", exc_info=True)
            self._conn = None
        self._engine.dispose()


class WorkerLease:
    """The right to be the deployment's active worker (or scheduler): one holder, standbys poll to take over."""

    def __init__(
        self, database_url: str, instance: Path, *, name: str = "worker", scope: str = "", poll_s: float = 2.0
    ):
        self.name = name
        self.poll_s = poll_s
        self._lock: _FileLock | _AdvisoryLock
        if database_url.startswith("postgresql"):
            self._lock = _AdvisoryLock(database_url, _advisory_key(name, database_url, scope), f"vb-{name}")
        else:
            self._lock = _FileLock(instance / f"{name}.lock")

    @classmethod
    def for_platform(cls, platform: Any, name: str = "worker") -> WorkerLease:
        """The lease of a deployment (its database, instance folder and topic prefix)."""
        settings = platform.settings
        return cls(
            settings["DATABASE_URL"],
            platform.instance,
            name=name,
            scope=settings["TOPIC_PREFIX"],
            poll_s=float(settings["LEASE_POLL_S"]),
        )

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it now."""
        try:
            return self._lock.try_acquire()
        except Exception as exc:  # the database is unreachable: try again at the next poll
            logger.warning("cannot reach the lease's database: %s", exc)
            return False

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait (polling every `poll_s`) until the lease is ours; False when `stop` was set first."""
        stop = stop or threading.Event()
        waited = False
        while not stop.is_set():
            if self.try_acquire():
                level = logging.WARNING if waited else logging.INFO  # a take-over is worth a line on the terminal
                logger.log(level, "%s lease taken by pid %d", self.name, os.getpid())
                return True
            if not waited:
                logger.warning("another %s (pid %s) holds the lease; standing by", self.name, self.holder())
                waited = True
            stop.wait(self.poll_s)
        return False

    def holder(self) -> int | None:
        """The pid of the process holding the lease, if it can be told."""
        try:
            return self._lock.holder()
        except Exception:  # the database is unreachable: unknown
            logger.debug("cannot tell the lease holder", exc_info=True)
            return None

    @property
    def held(self) -> bool:
        """True while this process holds the lease; False once it is lost (e.g. its database connection died)."""
        return self._lock.held()

    def release(self) -> None:
        """Give the lease up (a standby takes it at its next poll)."""
        self._lock.release()


class InstanceLock:
    """One `broadcast run` per instance folder: `instance/run.lock`, held for the life of the process."""

    def __init__(self, instance: Path) -> None:
        self._lock = _FileLock(instance / "run.lock")

    def acquire(self) -> None:
        """Take the lock, or raise BroadcastError("already_running") naming the pid that holds it."""
        if self._lock.try_acquire():
            return
        pid = self._lock.holder()
        shown = str(pid) if pid is not None else "?"
        raise BroadcastError(
            "already_running",
            f"已在运行 (pid {shown})：同一实例只能启动一个 broadcast run。",
            f"already running (pid {shown}): one `broadcast run` per instance.",
            kind="conflict",
            pid=pid,
        )

    def release(self) -> None:
        """Let the next start have it."""
        self._lock.release()
