"""SQLite writers of one process take turns in arrival order: a steady receipt writer cannot starve a mark."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from broadcast.db import Database
from broadcast.write_gate import WriteGate
from tests.conftest import wait_for


def _queued(gate: WriteGate, n: int) -> bool:
    return len(gate._waiting) == n


def test_waiters_get_the_gate_in_arrival_order_and_a_releaser_queues_behind_them() -> None:
    """FIFO: three threads queued behind the holder enter in the order they came; the holder re-queues last."""
    gate, order = WriteGate(), []
    assert gate.acquire(1)

    def enter(name: str) -> None:
        with gate.held(10) as got:
            assert got
            order.append(name)

    threads = []
    for i, name in enumerate("abc"):
        threads.append(threading.Thread(target=enter, args=(name,)))
        threads[-1].start()
        wait_for(lambda n=i + 1: _queued(gate, n), "waiter queued", timeout=10)
    gate.release()
    with gate.held(10):
        order.append("holder")
    for t in threads:
        t.join(10)
    assert order == ["a", "b", "c", "holder"]


def test_the_gate_is_reentrant_and_a_timed_out_waiter_leaves_the_queue() -> None:
    """The holder can nest; a waiter that gives up is not served later, and the gate stays usable."""
    gate = WriteGate()
    with gate.held(1), gate.held(1):
        result: list[bool] = []
        t = threading.Thread(target=lambda: result.append(gate.acquire(0.05)))
        t.start()
        t.join(10)
        assert result == [False]
        assert not gate._waiting
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(gate.acquire(1)))
    t.start()
    t.join(10)
    assert got == [True]


def test_a_write_is_not_starved_by_a_writer_committing_batch_after_batch(tmp_path: Path) -> None:
    """A mark that arrives while a batch holds SQLite's write lock gets in right after it, before the next batch."""
    db = Database(f"sqlite:///{tmp_path / 'gate.db'}")
    assert db.gate is not None
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)"))
    stop, mark_may_come, batches = threading.Event(), threading.Event(), []

    def batch(session) -> None:  # type: ignore[no-untyped-def]
        session.execute(text("INSERT INTO t (who) VALUES ('writer')"))
        session.flush()  # SQLite's write lock is held from here to the commit, as during a batch of receipts
        if len(batches) == 5 and not mark_may_come.is_set():
            mark_may_come.set()  # the mark arrives while this sixth batch holds the lock
            wait_for(lambda: _queued(db.gate, 1), "the mark queued behind the batch", timeout=10)

    def writer() -> None:
        while not stop.is_set():
            started = time.monotonic()
            db.run(batch)
            batches.append(time.monotonic() - started)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert mark_may_come.wait(30), "the writer never got busy"
        started = time.monotonic()
        db.run(lambda s: s.execute(text("INSERT INTO t (who) VALUES ('mark')")))
        waited = time.monotonic() - started
        wait_for(lambda: len(batches) >= 8, "the writer's next batches", timeout=30)
        writer_alive = t.is_alive() and not stop.is_set()
    finally:
        stop.set()
        t.join(30)
    assert writer_alive
    assert waited < 5 * max(batches), (waited, max(batches))
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM t WHERE who = 'mark'")) == 1
        order = conn.scalars(text("SELECT who FROM t ORDER BY id LIMIT 8")).all()
    assert order == ["writer"] * 6 + ["mark", "writer"]  # in right after the batch it arrived behind
    db.dispose()
