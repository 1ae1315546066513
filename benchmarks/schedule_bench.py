"""Schedules at county scale: reconcile 10,000 schedules after a restart, and start times on simulated speakers.

    .venv/bin/python benchmarks/schedule_bench.py reconcile --schedules 10000 --speakers 10000
    .venv/bin/python benchmarks/schedule_bench.py reconcile --database-url postgresql+psycopg://USER@HOST:5432/DB
    .venv/bin/python benchmarks/schedule_bench.py speakers --count 200 --occurrences 6 [--mosquitto]
        [--database-url postgresql+psycopg://USER@HOST:5432/DB]

`reconcile` seeds a temporary instance (SQLite in it, or a private PostgreSQL schema that is dropped
afterwards): a county of `--speakers` speakers (10 a grid, 5 grids a village, 20 villages a township) and
`--schedules` active schedules, 90 % for one grid and 10 % for one village, daily, workdays or weekly, at a
minute of the day between 06:00 and 21:30, none saved less than `--down-h` hours ago: the worker was down
that long and its windows ran out. The rows are inserted directly (saving them through the API is not what
is measured). A fresh process (the restarted worker) then calls `scheduler.run_due` back to back until no
schedule is left to top up, and prints the wall time, the runs it took, what it recorded (broadcasts,
deliveries, runs) and its peak RSS (ru_maxrss) over its RSS before the first run.

`speakers` starts the real server (`broadcast run`, whose worker calls run_due every RUN_EVERY_S = 1 s) with
`speaker-agent simulate` speakers, as benchmarks/fanout_bench.py does, then saves `--occurrences` one-off
schedules through the API, the first `--ahead-s` ahead and then one every `--spacing-s` seconds, each for the
whole county. It prints the command lateness (when each occurrence's play command reached the broker, minus
the occurrence second: negative is ahead), the scheduler's lateness against the moment the command had to be
sent (the occurrence minus the start lead; 0 when in time), and each speaker's start error (its started
receipt's time minus the occurrence second), p50/p99. `--county` runs the production shape instead: gunicorn
with 4 web workers and two `broadcast worker` processes (one holds the lease, one stands by);
`--kill-worker-after-s S` SIGKILLs the lease holder S seconds after the first occurrence (negative: before
it), and the figures show whether any occurrence was lost or played twice.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COUNTY = "421224000000"
SH = ZoneInfo("Asia/Shanghai")


def township(t: int) -> str:
    """The t-th township's 12-digit code."""
    return f"421224{100 + t:03d}000"


def village(t: int, v: int) -> str:
    """The v-th village of township t."""
    return f"{township(t)[:9]}{201 + v:03d}"


def grid(t: int, v: int, g: int) -> str:
    """The g-th grid of a village (two digits after the village's code)."""
    return f"{village(t, v)}{g + 1:02d}"


def pct(values: list[float], q: float) -> float:
    """q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _private_schema(url: str) -> tuple[str, str]:
    """A private schema on PostgreSQL: (url using it, schema name)."""
    from sqlalchemy import create_engine, text

    schema = f"schedule_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}", schema


def _drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def _settings(database_url: str) -> dict[str, Any]:
    from speakers.mosquitto_proc import free_port

    # No broker listens: nothing is due within SEND_AHEAD_S, so the reconcile publishes nothing.
    return {"DATABASE_URL": database_url, "QUIET_HOURS": "", "TTS_ENGINES": "espeak",
            "MQTT_URL": f"mqtt://127.0.0.1:{free_port()}", "MQTT_TIMEOUT_S": 0.3}  # fmt: skip


def seed(instance: Path, database_url: str, schedules: int, speakers: int, down_h: float) -> dict[str, Any]:
    """The county, its speakers, one clip and the schedules, written directly; returns what was made."""
    from sqlalchemy import insert

    from broadcast.models import Clip, Region, Schedule, Speaker
    from broadcast.platform import Platform
    from broadcast.services import accounts
    from broadcast.setup import initialize

    platform = Platform.from_settings(instance, _settings(database_url))
    initialize(platform, "admin", secrets.token_urlsafe(18))
    grids_n = max(1, speakers // 10)
    villages_n = -(-grids_n // 5)
    townships_n = -(-villages_n // 20)
    regions = [{"code": COUNTY, "name": "基准县", "level": "county", "parent_code": None}]
    regions += [
        {"code": township(t), "name": f"第{t + 1}镇", "level": "township", "parent_code": COUNTY}
        for t in range(townships_n)
    ]
    regions += [
        {"code": village(v // 20, v % 20), "name": f"第{v + 1}村", "level": "village", "parent_code": township(v // 20)}
        for v in range(villages_n)
    ]
    grid_codes = [grid(g // 100, (g // 5) % 20, g % 5) for g in range(grids_n)]
    regions += [
        {"code": code, "name": f"第{g + 1}网格", "level": "grid", "parent_code": code[:12]}
        for g, code in enumerate(grid_codes)
    ]
    now = time.time()
    saved = now - down_h * 3600
    day = datetime.fromtimestamp(saved, SH).date()
    rules = ["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "FREQ=WEEKLY;BYDAY=MO,WE,FR"]
    with platform.db.transaction() as session:
        session.execute(insert(Region), regions)
        session.execute(
            insert(Speaker),
            [{"id": f"s{i:05d}", "name": f"终端{i}", "grid_code": grid_codes[i % grids_n]} for i in range(speakers)],
        )
        admin = accounts.find_user(session, "admin")
        clip = Clip(sha256="0" * 64, format="mp3", mime="audio/mpeg", size_bytes=1000, duration_ms=60_000,
                    loudness_lufs=-16.0, true_peak_dbtp=-2.0, source="tts", title="普法讲堂",
                    created_by=admin.id)  # fmt: skip
        session.add(clip)
        session.flush()
        rows = []
        local = datetime.fromtimestamp(now, SH)
        busy = local.hour * 60 + local.minute
        for n in range(schedules):
            minute = 6 * 60 + (n * 7) % (15 * 60 + 30)  # 06:00 .. 21:29, spread over the day
            if -10 <= minute - busy <= 15:
                minute += 30  # nothing due right now: the reconcile publishes nothing (no broker listens)
            target = grid_codes[n % grids_n] if n % 10 else grid_codes[n % grids_n][:12]
            rows.append({
                "title": f"计划{n}", "clip_id": clip.id, "targets": [target], "priority": "normal",
                "rule": rules[n % len(rules)], "dtstart": f"{day.isoformat()}T{minute // 60:02d}:{minute % 60:02d}",
                "timezone": "Asia/Shanghai", "exdates": [], "grace_s": 300.0, "state": "active", "version": 1,
                "materialized_until": saved, "created_by": admin.id,
            })  # fmt: skip
        session.execute(insert(Schedule), rows)
    platform.close()
    return {"schedules": schedules, "speakers": speakers, "grids": grids_n, "villages": villages_n}


def _rss_kb() -> int:
    """This process's resident set now, in KiB (from /proc)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def reconcile_child(instance: Path, database_url: str) -> dict[str, Any]:
    """In a fresh process (the restarted worker): run_due back to back until nothing is left to top up."""
    from sqlalchemy import func, or_, select

    from broadcast import scheduler
    from broadcast.models import Broadcast, Delivery, Schedule, ScheduleRun
    from broadcast.platform import Platform

    platform = Platform.from_settings(instance, _settings(database_url))
    rss_before = _rss_kb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    runs: list[float] = []
    while True:
        now = time.time()
        started = time.perf_counter()
        scheduler.run_due(platform, now)
        runs.append(time.perf_counter() - started)
        with platform.db.transaction() as session:
            left = session.scalar(
                select(func.count())
                .select_from(Schedule)
                .where(
                    Schedule.state == "active",
                    or_(
                        Schedule.materialized_until.is_(None),
                        Schedule.materialized_until < now + scheduler.LOOKAHEAD_S - scheduler.REFILL_S,
                    ),
                )
            )
        if not left or len(runs) > 50:
            break
    total = time.perf_counter() - began
    with platform.db.transaction() as session:
        counted = {
            "broadcasts": session.scalar(select(func.count()).select_from(Broadcast)),
            "deliveries": session.scalar(select(func.count()).select_from(Delivery)),
            "runs_by_state": dict(
                session.execute(select(ScheduleRun.state, func.count()).group_by(ScheduleRun.state)).tuples().all()
            ),
        }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss
    cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    platform.close()
    return {
        "database": platform.db.engine.dialect.name,
        "reconcile_s": round(total, 2),
        "scheduler_cpu_s": round(cpu, 2),
        "run_due_calls": len(runs),
        "run_due_s": [round(r, 2) for r in runs],
        **counted,
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
    }


def reconcile(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, then time the restarted worker's reconcile in a child process."""
    work = Path(tempfile.mkdtemp(prefix="schedule-bench-"))
    url, schema = f"sqlite:///{work / 'bench.db'}", None
    if args.database_url:
        url, schema = _private_schema(args.database_url)
    try:
        began = time.perf_counter()
        made = seed(work / "instance", url, args.schedules, args.speakers, args.down_h)
        made["seed_s"] = round(time.perf_counter() - began, 1)
        child = subprocess.run(
            [sys.executable, __file__, "_reconcile", str(work / "instance"), url],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode:
            raise SystemExit(f"reconcile failed:\n{child.stderr[-4000:]}")
        return made | json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if schema and args.database_url:
            _drop_schema(args.database_url, schema)
        shutil.rmtree(work, ignore_errors=True)


def speakers_run(args: argparse.Namespace) -> dict[str, Any]:
    """The real server and simulated speakers: one-off county-wide schedules a little ahead, played and timed."""
    import fanout_bench as fb

    from speakers.broker import EmbeddedBroker
    from speakers.messages import Receipt
    from speakers.mosquitto_proc import MosquittoProcess

    work = Path(tempfile.mkdtemp(prefix="schedule-bench-speakers-"))
    os.environ["BROADCAST_LOG_LEVEL"] = "INFO"  # RealServer waits for the worker's "worker started" line
    fleet = argparse.Namespace(
        count=args.count, database_url=args.database_url, web="run", lead_ms=args.lead_ms, processes=1,
        connect_rate=1000.0, profile_simulator=None, profile_burst=None, clip_text=args.clip_text,
    )  # fmt: skip
    broker: Any = MosquittoProcess(work, max_connections=-1) if args.mosquitto else EmbeddedBroker()
    broker.start()
    prefix = "sbench" + uuid.uuid4().hex[:6]
    server: Any = None
    simulator: Any = None
    try:
        server = (county_server(fb) if args.county else fb.RealServer)(fleet, broker.url, prefix, work)
        server.start()
        simulator = fb.Simulator(fleet, broker.url, prefix, server.key, work / "sim")
        fb.wait_until(lambda: server.online() >= args.count, 300, "every speaker online")
        fb.wait_until(lambda: simulator.status.get("synced", 0) >= args.count, 60, "clock samples", fatal=False)
        server.ready()
        first = datetime.now(SH).replace(microsecond=0) + timedelta(seconds=args.ahead_s)
        times: dict[str, float] = {}
        for n in range(args.occurrences):
            at = first + timedelta(seconds=n * args.spacing_s)
            body = {"clip_id": server.clip["id"], "targets": [fb.COUNTY], "priority": "normal",
                    "dtstart": at.strftime("%Y-%m-%dT%H:%M:%S"), "title": f"基准{n}"}  # fmt: skip
            made = server.api("POST", "/api/v1/schedules", body)
            times[str(made["id"])] = at.timestamp()
        last = max(times.values())
        if args.county and args.kill_worker_after_s is not None:
            killer = threading.Timer(min(times.values()) + args.kill_worker_after_s - time.time(), server.kill_worker)
            killer.daemon = True
            killer.start()
        fb.wait_until(lambda: time.time() > last + server.clip["duration_ms"] / 1000 + 15, last - time.time() + 120,
                      "the last occurrence to finish")  # fmt: skip
        shape = {"web": "gunicorn -w 4 + 2 workers" if args.county else "broadcast run"}
        if args.county:
            shape["worker_killed_at_s"] = server.killed_at and round(server.killed_at - min(times.values()), 1)
        result = {"speakers": args.count, **shape, **figures(server, times, [r for _t, r in server.receipts], Receipt)}
        return result | runs_by_state(server)
    finally:
        if simulator is not None:
            simulator.stop()
        if server is not None:
            server.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def county_server(fb: Any) -> type:
    """RealServer with the production shape: gunicorn -w 4 and two `broadcast worker` processes, one standing by."""

    class CountyServer(fb.RealServer):
        killed_at: float | None = None

        def start(self) -> None:
            """Four web workers and the lease holder, then the standby; the observer and the clip as RealServer."""
            bin_dir = Path(sys.executable).parent
            self._spawn("web", [str(bin_dir / "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{self.port}",
                                "broadcast:create_app()"])  # fmt: skip
            self._spawn("worker", [str(bin_dir / "broadcast"), "worker"])
            fb.wait_until(self._up, 180, "the server and its worker")
            self._spawn("standby", [str(bin_dir / "broadcast"), "worker"])
            self.observer = fb.connect(self.broker_url, client_id=f"bench-observer-{uuid.uuid4().hex[:6]}")
            self.observer.subscribe(fb.protocol.receipt_topic(self.prefix),
                                    lambda m: self.observed.append((time.time(), m.payload)), qos=0)  # fmt: skip
            self.observer.subscribe(fb.protocol.command_topic_for_region(self.prefix, fb.COUNTY),
                                    lambda m: self.commands.append((time.time(), m.payload)), qos=0)  # fmt: skip
            self.clip = self.api("POST", "/api/v1/clips", {"text": self.args.clip_text, "title": "schedule bench"})

        def kill_worker(self) -> None:
            """SIGKILL the worker holding the lease: the standby must take over, losing and doubling nothing."""
            process = dict(self.procs)["worker"]
            process.kill()
            self.killed_at = time.time()

    return CountyServer


def runs_by_state(server: Any) -> dict[str, Any]:
    """The schedule runs as the database recorded them (one per occurrence, whatever happened)."""
    from sqlalchemy import func, select

    from broadcast.models import ScheduleRun

    with server.platform.db.session() as session:
        rows = session.execute(select(ScheduleRun.state, func.count()).group_by(ScheduleRun.state)).tuples().all()
    return {"runs_by_state": dict(rows)}


def figures(server: Any, times: dict[str, float], receipts: list[Any], _receipt: type) -> dict[str, Any]:
    """Lateness of each play command at the broker and each speaker's start error, against the occurrence."""
    from sqlalchemy import select

    from broadcast.models import ScheduleRun

    with server.platform.db.session() as session:
        runs = session.execute(select(ScheduleRun.schedule_id, ScheduleRun.broadcast_id)).tuples().all()
    occurrence = {str(bid): times[str(sid)] for sid, bid in runs if bid is not None and str(sid) in times}
    lateness = []
    for seen, payload in server.commands:
        cmd = json.loads(json.loads(payload)["body"])["cmd"]
        bid = cmd.get("broadcast_id")
        if cmd.get("type", "play") == "play" and bid in occurrence:
            lateness.append((seen - occurrence[bid]) * 1000)
            occurrence[bid + ":seen"] = seen
    started: dict[tuple[str, str], set[float]] = {}
    for r in receipts:
        if r.event == "started" and r.broadcast_id in occurrence:
            started.setdefault((r.speaker_id, r.broadcast_id), set()).add(round(r.at, 3))
    # A started receipt repeated with the same time is the receipt sent again (a speaker answers a re-sent
    # command with its latest receipt); a second start time would be a second play.
    errors = [(min(ats) - occurrence[bid]) * 1000 for (_sid, bid), ats in started.items()]
    # The scheduler is late when a play command reaches the broker after the moment it had to be sent for
    # every speaker to start on the second: the occurrence minus the start lead.
    late = [max(0.0, ms + server.args.lead_ms) for ms in lateness]
    return {
        "occurrences": len(times),
        "play_commands_seen": len(lateness),
        "command_lateness_ms_p50": round(pct(lateness, 50), 1) if lateness else None,
        "command_lateness_ms_p99": round(pct(lateness, 99), 1) if lateness else None,
        "scheduler_lateness_ms_p50": round(pct(late, 50), 1) if late else None,
        "scheduler_lateness_ms_p99": round(pct(late, 99), 1) if late else None,
        "starts": len(errors),
        "started_receipts": sum(1 for r in receipts if r.event == "started" and r.broadcast_id in occurrence),
        "second_plays": sum(len(ats) - 1 for ats in started.values()),
        "expected_starts": len(times) * server.args.count,
        "start_error_ms_p50": round(pct(errors, 50), 1) if errors else None,
        "start_error_ms_p99_abs": round(pct([abs(e) for e in errors], 99), 1) if errors else None,
        "start_error_ms_max_abs": round(max(abs(e) for e in errors), 1) if errors else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    rec = sub.add_parser("reconcile", help="10,000 schedules after a restart: time, runs, memory")
    rec.add_argument("--schedules", type=int, default=10_000)
    rec.add_argument("--speakers", type=int, default=10_000)
    rec.add_argument("--down-h", type=float, default=2.0, help="how long the worker was down (default 2 h)")
    rec.add_argument("--database-url", help="PostgreSQL (a private schema is made and dropped); default SQLite")
    spk = sub.add_parser("speakers", help="simulated speakers: scheduler lateness and start error")
    spk.add_argument("--count", type=int, default=200, help="simulated speakers (default 200)")
    spk.add_argument("--occurrences", type=int, default=6)
    spk.add_argument("--ahead-s", type=float, default=40.0, help="first occurrence this far ahead (default 40)")
    spk.add_argument("--spacing-s", type=float, default=12.0, help="between occurrences (default 12)")
    spk.add_argument("--lead-ms", type=int, default=950, help="the server's START_LEAD_MS")
    spk.add_argument("--clip-text", default="请注意，这是定时广播测试。")
    spk.add_argument("--mosquitto", action="store_true", help="a private mosquitto (default: the embedded broker)")
    spk.add_argument("--database-url", help="PostgreSQL for the server (default SQLite)")
    spk.add_argument("--county", action="store_true", help="gunicorn -w 4 and two `broadcast worker` processes")
    spk.add_argument("--kill-worker-after-s", type=float,
                     help="with --county: SIGKILL the lease holder this long after the first occurrence")  # fmt: skip
    return parser.parse_args(argv)


def main() -> None:
    """Parse arguments, run, print."""
    if len(sys.argv) == 4 and sys.argv[1] == "_reconcile":
        print(json.dumps(reconcile_child(Path(sys.argv[2]), sys.argv[3])))
        return
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = reconcile(args) if args.mode == "reconcile" else speakers_run(args)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
