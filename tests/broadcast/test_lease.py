"""No single process whose death stops the county: two real workers share one lease, a standby takes over
within 10 s of kill -9 and resumes the outbox; one instance, one `broadcast run`."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcast.lease import InstanceLock, WorkerLease
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.e2e.procs import Proc, exe, wait_for


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """The stack on SQLite and on PostgreSQL, re-sending every second at most."""
    stack = server_stack(tmp_path, database_url, RESEND_FIRST_S=0.5, RESEND_MAX_S=1)
    yield stack
    stop_stack(stack)


class SpeakerTopics:
    """Records when commands arrive on any speaker's own topic (re-sends), on a real broker connection."""

    def __init__(self, url: str, prefix: str) -> None:
        from speakers.transport import connect

        self.arrivals: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.transport = connect(url, client_id=f"resend-watch-{os.getpid()}")
        self.transport.subscribe(f"{prefix}/cmd/speaker/#", self._on, qos=1)

    def _on(self, message: object) -> None:
        command_id = json.loads(json.loads(message.payload)["body"])["id"]  # type: ignore[attr-defined]
        with self._lock:
            self.arrivals.append((time.monotonic(), command_id))

    def since(self, instant: float) -> list[str]:
        """Command ids re-sent after `instant` (monotonic)."""
        with self._lock:
            return [cid for at, cid in self.arrivals if at > instant]


def test_the_standby_worker_takes_over_within_ten_seconds_of_kill_9(server: Server) -> None:
    watch = SpeakerTopics(server.broker.url, server.env["BROADCAST_TOPIC_PREFIX"])
    probe = WorkerLease.for_platform(server.platform)  # asks who holds the lease; never takes it
    try:
        workers = {proc.popen.pid: proc for proc in (server.worker("worker-a"), server.worker("worker-b"))}
        active = workers[wait_for(lambda: probe.holder() in workers and probe.holder(), 60, "a worker to lead")]
        standby = next(w for w in workers.values() if w is not active)
        assert not probe.try_acquire()
        # The active worker runs the outbox: nobody acknowledges, so the command is re-sent (positive check).
        broadcast_id = server.broadcast(priority="urgent")
        before = time.monotonic()
        wait_for(lambda: watch.since(before), 30, "a re-send from the active worker")
        command_id = watch.since(before)[0]
        active.popen.kill()  # kill -9
        killed = time.monotonic()
        active.popen.wait(timeout=10)
        wait_for(lambda: probe.holder() == standby.popen.pid, 30, "the standby to take the lease")
        taken = time.monotonic()
        assert taken - killed < 10, f"took over {taken - killed:.1f} s after the kill"
        print(f"standby took over {taken - killed:.1f} s after kill -9")  # the measured figure, shown with -s
        wait_for(lambda: command_id in watch.since(taken), 30, "the standby to re-send the pending command")
        assert server.delivery(broadcast_id, "spk-42122410420101-1").state == "sent"
    finally:
        probe.release()
        watch.transport.close()


def test_a_lease_has_one_holder_and_passes_on_release(tmp_path: Path, database_url: str) -> None:
    first = WorkerLease(database_url, tmp_path, scope="t", poll_s=0.1)
    second = WorkerLease(database_url, tmp_path, scope="t", poll_s=0.1)
    try:
        assert first.try_acquire()
        assert first.held
        assert not second.try_acquire()
        assert not second.held
        stop = threading.Event()
        stop.set()
        assert second.acquire(stop) is False  # a standby told to stop gives up waiting
        first.release()
        assert not first.held
        assert second.acquire()
        assert second.held
    finally:
        first.release()
        second.release()


def test_a_second_broadcast_run_on_the_same_instance_is_refused(tmp_path: Path) -> None:
    from tests.conftest import free_port
    from tests.e2e.deployment import prepare

    deployment = prepare(tmp_path, [])
    try:
        first = deployment.start_server()
        proc = Proc(
            [exe("broadcast"), "run", "--port", str(free_port()), "--mqtt-port", str(free_port())],
            tmp_path / "second.log",
            env=deployment.env,
        )
        code = proc.popen.wait(timeout=60)
        assert code == 1, proc.output()
        assert f"已在运行 (pid {first.popen.pid})" in proc.output()
        assert f"already running (pid {first.popen.pid})" in proc.output()
        assert first.alive(), "the first server is untouched"
        proc.stop()
    finally:
        deployment.stop()
    lock = InstanceLock(deployment.platform.instance)  # freed when the first one stopped
    lock.acquire()
    lock.release()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def test_the_demo_simulator_dies_with_a_killed_server(tmp_path: Path) -> None:
    from tests.e2e.deployment import prepare

    deployment = prepare(tmp_path, [])
    try:
        proc = Proc(
            [
                exe("broadcast"),
                "run",
                "--demo",
                "--port",
                str(deployment.port),
                "--mqtt-port",
                str(deployment.mqtt_port),
            ],
            tmp_path / "demo.log",
            env=deployment.env,
        )
        deployment.procs.append(proc)
        simulator = wait_for(lambda: _children(proc.popen.pid), 60, "the simulator to start")[0]
        assert not _gone(simulator)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)
        wait_for(lambda: _gone(simulator), 20, "the simulator to die with its parent")
    finally:
        deployment.stop()


# Only PostgreSQL: a file lock of SQLite cannot be lost while its process lives.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_whose_lease_connection_dies_stops_working(server: Server, database_url: str) -> None:
    from sqlalchemy import create_engine, text

    worker = server.worker()
    probe = WorkerLease.for_platform(server.platform)
    try:
        wait_for(lambda: probe.holder() == worker.popen.pid, 60, "the worker to take the lease")
        engine = create_engine(database_url)
        with engine.begin() as conn:  # the database drops the lease's connection (a restart, a network cut)
            killed = conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"vb-worker:{worker.popen.pid}"},
            ).all()
        engine.dispose()
        assert killed == [(True,)]
        assert worker.popen.wait(timeout=30) == 1, "it stops working and exits for systemd to restart it"
    finally:
        probe.release()


def test_readyz_follows_a_real_worker_through_kill_9_and_restart(server: Server) -> None:
    """/readyz turns 503 within 15 s of the worker's death and 200 once a worker works again."""
    client = server.app.test_client()

    def ready() -> bool:
        return client.get("/readyz").status_code == 200

    first = server.worker("worker-a")
    wait_for(ready, 60, "/readyz to turn 200 with a worker running")
    first.popen.kill()  # kill -9
    killed = time.monotonic()
    first.popen.wait(timeout=10)
    wait_for(lambda: not ready(), 30, "/readyz to notice the dead worker")
    noticed = time.monotonic() - killed
    assert noticed <= 15 + 2, f"noticed {noticed:.1f} s after the kill"  # 15 s of silence, plus one poll
    body = client.get("/readyz").get_json()
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    server.worker("worker-b")
    wait_for(ready, 60, "/readyz to turn 200 again")
