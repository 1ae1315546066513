"""Fan-out benchmark: one region-wide play to N simulated speakers, measured at the server.

    .venv/bin/python benchmarks/fanout_bench.py --count 1000            # embedded broker (in this process)
    .venv/bin/python benchmarks/fanout_bench.py --count 10000 --mosquitto --processes 2  # private mosquitto
    .venv/bin/python benchmarks/fanout_bench.py --count 10000 --mqtt-url mqtt://127.0.0.1:1883 --processes 2
    .venv/bin/python benchmarks/fanout_bench.py --count 10000 --mosquitto --processes 2 --server real \\
        [--web gunicorn] [--database-url postgresql+psycopg://USER@HOST:5432/DB]

It starts a broker (the external one given by --mqtt-url, a private Mosquitto with --mosquitto, else the
embedded one), the server side and the fleet simulator (`speaker-agent simulate`, a separate process), waits
until every speaker is online with a measured clock, sends one urgent play to the county with
start_at = now + --lead-ms, and prints:

- command→started p50/p99/max: from just before the server's publish to each speaker's started.at
- start spread: started.at minus the commanded start_at (p50/p99 of the absolute value, and max - min)
- receipts/s: receipts delivered by the broker per second during the burst (busiest one-second window)
- memory per simulated speaker: simulator RSS / N (and the growth over its empty baseline / N)

`--server library` (default) is `LibraryServer`: the `speakers.server` library in this process (publisher,
receipt consumer, time responder) and a small media HTTP server. `--server real` is `RealServer`: a temporary
instance of the village-broadcast server (regions and speakers seeded to match the simulator's ids and grids)
run as real processes, `broadcast run` or, with `--web gunicorn`, two gunicorn web workers and one `broadcast
worker`, on SQLite in the instance or `--database-url` (PostgreSQL: a private schema is created and dropped).
The play is POST /api/v1/clips then POST /api/v1/broadcasts ("publish" = just before that POST); the receipts
are watched by a passive QoS 0 subscriber, and it adds the server's own figures: the POST's latency and where
it went, the time until the database shows every delivery finished, and the worker's receipts/s into it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from speakers import protocol
from speakers.broker import EmbeddedBroker
from speakers.ffmpeg import run_ffmpeg
from speakers.mediaserver import MediaServer
from speakers.messages import Receipt, State
from speakers.mosquitto_proc import MosquittoProcess, free_port
from speakers.protocol import Play, Target
from speakers.server import CommandPublisher, ReceiptConsumer, TimeResponder
from speakers.signing import KeyPair
from speakers.transport import connect

COUNTY, TOWNSHIP = "421224000000", "421224100000"
GRIDS_PER_VILLAGE = 50
LEVEL = {"queued": 0, "sent": 0, "acknowledged": 1, "playing": 2}  # receipts a delivery has absorbed; terminal: 3


def grid_count(count: int) -> int:
    """Grids the fleet is spread over (about 8 speakers a grid)."""
    return max(1, count // 8)


def grid_code(g: int) -> str:
    """Grid g's code as `speaker-agent simulate --region COUNTY --region TOWNSHIP` makes it."""
    return f"{TOWNSHIP}{g:03d}"


def village_code(v: int) -> str:
    """The v-th village of the township (the simulator knows no villages: they only exist on the server)."""
    return f"{TOWNSHIP[:9]}{201 + v:03d}"


class LibraryServer:
    """The server side built from `speakers.server`: publisher, receipt consumer, time responder."""

    def __init__(self, args: argparse.Namespace, broker_url: str, prefix: str, work: Path) -> None:
        self.args, self.broker_url, self.prefix, self.work = args, broker_url, prefix, work
        self.key = KeyPair.generate()
        self.receipts: list[tuple[float, Receipt]] = []  # (arrival time, receipt)
        self.states: dict[str, State] = {}
        self._lock = threading.Lock()
        self._seq = int(time.time())

    def start(self) -> None:
        """Media server and clip; connect (one connection publishes, one consumes, one answers time)."""
        media_dir = self.work / "media"
        media_dir.mkdir()
        self.clip, self.sha256, self.duration_ms = make_clip(media_dir, self.args.clip_seconds)
        self.media = MediaServer(media_dir)
        self.media.start()
        self.pub_transport = connect(self.broker_url, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
        self.sub_transport = connect(self.broker_url, client_id=f"bench-sub-{uuid.uuid4().hex[:6]}")
        self.time_transport = connect(self.broker_url, client_id=f"bench-time-{uuid.uuid4().hex[:6]}")
        self.publisher = CommandPublisher(self.pub_transport, self.key, prefix=self.prefix)
        self.consumer = ReceiptConsumer(
            self.sub_transport, prefix=self.prefix, on_receipt=self._receipt, on_state=self._state
        )
        self.consumer.start()
        self.responder = TimeResponder(self.time_transport, self.key, prefix=self.prefix, max_per_minute=60)
        self.responder.start()

    def _receipt(self, receipt: Receipt) -> None:
        with self._lock:
            self.receipts.append((time.time(), receipt))

    def _state(self, state: State) -> None:
        with self._lock:
            self.states[state.speaker_id] = state

    def online(self) -> int:
        """How many speakers said online last."""
        with self._lock:
            return sum(1 for s in self.states.values() if s.online)

    def ready(self) -> dict[str, Any]:
        """Nothing more to wait for before the play."""
        return {}

    def groups(self) -> dict[str, list[int]]:
        """The processes of the server side (this one)."""
        return {"server": [os.getpid()]}

    def play(self) -> tuple[float, str, float]:
        """Publish one county-wide play; return (time just before publishing, broadcast id, start_at)."""
        self._seq += 1
        before = time.time()
        start_at = before + self.args.lead_ms / 1000
        play = Play(broadcast_id=f"bench-{self._seq}", priority="urgent", media_url=self.media.url(self.clip.name),
                    sha256=self.sha256, duration_ms=self.duration_ms, start_at=start_at,
                    expires_at=start_at + 60)  # fmt: skip
        self.publisher.publish(play, seq=self._seq, command_id=uuid.uuid4().hex, targets=[Target.region(COUNTY)],
                               issued_at=before, expires_at=before + 120)  # fmt: skip
        return before, play.broadcast_id, start_at

    def wait_done(self, bid: str, count: int, timeout: float) -> None:
        """Until every speaker's finished receipt arrived."""
        wait_until(lambda: sum(1 for _t, r in list(self.receipts) if r.broadcast_id == bid and r.event == "finished")
                   >= count, timeout, "every finished receipt", fatal=False)  # fmt: skip

    def server_figures(self, published: float, bid: str) -> dict[str, Any]:
        """No figures beyond the common ones."""
        return {}

    def stop(self) -> None:
        """Disconnect."""
        for part in ("responder", "consumer"):
            if hasattr(self, part):
                getattr(self, part).stop()
        for transport in ("pub_transport", "sub_transport", "time_transport"):
            if hasattr(self, transport):
                getattr(self, transport).close()
        if hasattr(self, "media"):
            self.media.stop()


def _pg_execute(url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()


class RealServer:
    """The village-broadcast server: a temporary instance and its real processes, watched from outside."""

    def __init__(self, args: argparse.Namespace, broker_url: str, prefix: str, work: Path) -> None:
        from broadcast.platform import Platform
        from broadcast.setup import initialize

        self.args, self.broker_url, self.prefix, self.work = args, broker_url, prefix, work
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.schema: str | None = None
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.observed: list[tuple[float, bytes]] = []  # receipts as the broker delivered them (arrival, payload)
        self.commands: list[tuple[float, bytes]] = []  # county commands as the broker delivered them
        self.series: list[tuple[float, dict[str, int]]] = []  # (time, deliveries by state) polled from the db
        self._parsed: list[tuple[float, Receipt]] = []
        settings = {"TOPIC_PREFIX": prefix, "QUIET_HOURS": "", "TTS_ENGINES": "espeak", "MQTT_URL": broker_url,
                    "START_LEAD_MS": str(args.lead_ms), "PUBLIC_URL": self.base}  # fmt: skip
        url = args.database_url
        if url and url.startswith("postgresql") and "options=" not in url:
            self.schema, self._admin_url = f"fanout_bench_{uuid.uuid4().hex[:8]}", url
            _pg_execute(url, f"CREATE SCHEMA {self.schema}")
            url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{self.schema}"
            # Named connections: the server's PostgreSQL backends are found (and their CPU counted) by name.
            settings["DATABASE_URL"] = f"{url}&application_name={self.schema}"
            url += f"&application_name={self.schema}_bench"
        elif url:
            settings["DATABASE_URL"] = url
        instance = work / "instance"
        # "worker started" is logged at INFO, which the terminal shows only when asked to
        self.env = {**os.environ, "BROADCAST_INSTANCE": str(instance), "BROADCAST_LOG_LEVEL": "INFO"}
        self.env.update({f"BROADCAST_{name}": value for name, value in settings.items()})
        self.platform = Platform.from_settings(instance, {**settings, **({"DATABASE_URL": url} if url else {})})
        initialize(self.platform, "admin", secrets.token_urlsafe(18))
        self.token = self._seed(args.count)
        self.key = KeyPair.load(self.platform.signing_key_path)

    def _seed(self, count: int) -> str:
        """County → township → villages → the simulator's grids, and one Speaker row per simulated speaker."""
        from broadcast.models import Speaker
        from broadcast.services import accounts
        from broadcast.services.regions import create_region

        grids = grid_count(count)
        villages = -(-grids // GRIDS_PER_VILLAGE)
        with self.platform.db.transaction() as session:
            create_region(session, COUNTY, "基准县", "county", None)
            create_region(session, TOWNSHIP, "基准镇", "township", COUNTY)
            session.flush()
            for v in range(villages):
                create_region(session, village_code(v), f"基准{v + 1}村", "village", TOWNSHIP)
            session.flush()
            for g in range(grids):
                create_region(session, grid_code(g), f"第{g + 1}网格", "grid", village_code(g // GRIDS_PER_VILLAGE))
            session.flush()
            session.add_all(
                Speaker(id=f"bench-{i:05d}", name=f"模拟终端{i}", grid_code=grid_code(i % grids)) for i in range(count)
            )
            return accounts.create_token(session, accounts.find_user(session, "admin"), actor="bench")

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.work / f"{name}.log").open("wb") as log:
            self.procs.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)))

    def _logs(self) -> str:
        return "".join((self.work / f"{n}.log").read_text(errors="replace") for n, _p in self.procs)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON call to the server's API with the admin's token."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - our server
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read())

    def _up(self) -> bool:
        if any(p.poll() is not None for _n, p in self.procs):
            raise SystemExit(f"a server process exited:\n{self._logs()[-3000:]}")
        try:
            self.api("GET", "/api/v1/time")
        except OSError:
            return False
        return "worker started" in self._logs()

    def start(self) -> None:
        """Start the processes, the passive observer and make the clip (text to speech, espeak)."""
        bin_dir = Path(sys.executable).parent
        if self.args.web == "gunicorn":
            self._spawn("web", [str(bin_dir / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{self.port}",
                                "broadcast:create_app()"])  # fmt: skip
            self._spawn("worker", [str(bin_dir / "broadcast"), "worker"])
        else:
            self._spawn("server", [str(bin_dir / "broadcast"), "run", "--port", str(self.port)])
        wait_until(self._up, 90, "the server and its worker")
        self.observer = connect(self.broker_url, client_id=f"bench-observer-{uuid.uuid4().hex[:6]}")
        # QoS 0 and no parsing on arrival: the observer must cost the broker and this box as little as it can.
        self.observer.subscribe(protocol.receipt_topic(self.prefix),
                                lambda m: self.observed.append((time.time(), m.payload)), qos=0)  # fmt: skip
        self.observer.subscribe(protocol.command_topic_for_region(self.prefix, COUNTY),
                                lambda m: self.commands.append((time.time(), m.payload)), qos=0)  # fmt: skip
        self.clip = self.api("POST", "/api/v1/clips", {"text": self.args.clip_text, "title": "fan-out benchmark"})

    def _count(self, *where: Any) -> int:
        from sqlalchemy import func, select

        from broadcast.models import Speaker

        with self.platform.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Speaker).where(*where)) or 0)

    def online(self) -> int:
        """Speakers the database shows online (the worker wrote their state)."""
        from broadcast.models import Speaker

        return self._count(Speaker.online.is_(True))

    def ready(self) -> dict[str, Any]:
        """Wait for the worker's first schedule-snapshot round (one snapshot per speaker that came online)."""
        from broadcast.models import Speaker

        began = time.monotonic()
        wait_until(lambda: self._count(Speaker.schedule_synced_at.is_not(None)) >= self.args.count,
                   240, "every speaker's schedule snapshot acknowledged", fatal=False)  # fmt: skip
        return {"snapshot_round_wait_s": round(time.monotonic() - began, 1)}

    def groups(self) -> dict[str, list[int]]:
        """The server's processes (`broadcast run`, or gunicorn's master and workers and the worker) by role,
        and its PostgreSQL backends when the database is a private schema on this machine."""
        groups = {name: [p.pid, *children_of(p.pid)] for name, p in self.procs}
        if self.schema:
            from sqlalchemy import text

            with self.platform.db.session() as session:
                query = text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
                groups["database"] = list(session.scalars(query, {"name": self.schema}))
        return groups

    def play(self) -> tuple[float, str, float]:
        """POST /api/v1/broadcasts for the county; return (time just before the POST, broadcast id, start_at)."""
        body = {"clip_id": self.clip["id"], "targets": [COUNTY], "priority": "urgent"}
        self.cpu_before = {name: cpu_seconds(pids) for name, pids in self.groups().items()}
        before = time.time()
        reply = self.api("POST", "/api/v1/broadcasts", body)
        self.post_done = time.time()
        self.bid = str(reply["id"])
        self.poller = threading.Thread(target=self._poll, args=(int(reply["id"]),), daemon=True)
        self.poller.start()
        return before, self.bid, float(reply["start_at"])

    def _poll(self, bid: int) -> None:
        from broadcast.services.broadcasts import counts

        deadline = time.time() + self.args.lead_ms / 1000 + self.clip["duration_ms"] / 1000 + 180
        while time.time() < deadline:
            with self.platform.db.session() as session:
                tally = counts(session, bid)
            self.series.append((time.time(), tally))
            if tally and not any(state in LEVEL for state in tally):
                return
            time.sleep(0.1)

    def wait_done(self, bid: str, count: int, timeout: float) -> None:
        """Until the database shows every delivery in a final state (or the poller gives up)."""
        self.poller.join(timeout + 180)
        self.cpu_after = {name: cpu_seconds(pids) for name, pids in self.groups().items()}

    @property
    def receipts(self) -> list[tuple[float, Receipt]]:
        """The receipts the observer saw, parsed on demand (never during the burst)."""
        for t, payload in self.observed[len(self._parsed) :]:
            self._parsed.append((t, Receipt.from_dict(json.loads(payload))))
        return self._parsed

    def server_figures(self, published: float, bid: str) -> dict[str, Any]:
        """The POST's latency and breakdown, the database's catch-up and the worker's rate."""
        figures: dict[str, Any] = {
            "server": f"real ({self.args.web})",
            "database": self.platform.db.engine.dialect.name,
        }
        figures["post_broadcast_ms"] = round((self.post_done - published) * 1000, 1)
        mine = [(t, json.loads(json.loads(p)["body"])) for t, p in self.commands]
        mine = [(t, body) for t, body in mine if body["cmd"].get("broadcast_id") == bid]
        if mine:  # where the POST's time went, from the command's own timestamps (one clock: this host)
            seen, body = mine[0]
            created = body["cmd"]["start_at"] - self.args.lead_ms / 1000
            figures["post_breakdown_ms"] = {
                "request_to_create": round((created - published) * 1000, 1),
                "resolve_and_record_deliveries": round((body["issued_at"] - created) * 1000, 1),
                "commit_sign_publish": round((seen - body["issued_at"]) * 1000, 1),
                "mark_sent_and_reply": round((self.post_done - seen) * 1000, 1),
            }
        start_at = mine[0][1]["cmd"]["start_at"] if mine else published + self.args.lead_ms / 1000
        total = self.args.count
        levels = [
            (t, sum(3 * n if s not in LEVEL else LEVEL[s] * n for s, n in tally.items())) for t, tally in self.series
        ]
        playing = next(
            (t for t, tally in self.series if sum(n for s, n in tally.items() if LEVEL.get(s, 3) >= 2) >= total), None
        )
        finished = next((t for t, tally in self.series if tally.get("finished", 0) >= total), None)
        peak = 0.0
        for i, (t0, l0) in enumerate(levels):
            later = next(((t, lv) for t, lv in levels[i:] if t - t0 >= 1.0), None)
            if later:
                peak = max(peak, (later[1] - l0) / (later[0] - t0))
        last_receipt = max((t for t, _p in self.observed), default=None)
        figures.update({
            "db_final_counts": self.series[-1][1] if self.series else {},
            "db_all_playing_after_start_s": round(playing - start_at, 2) if playing else None,
            "db_all_finished_after_publish_s": round(finished - published, 2) if finished else None,
            "db_lag_after_last_receipt_s": round(finished - last_receipt, 2) if finished and last_receipt else None,
            "db_receipts_per_s_peak": round(peak),
            "db_receipts_per_s_started_burst": round(2 * total / (playing - start_at)) if playing else None,
        })  # fmt: skip
        if hasattr(self, "cpu_after"):
            figures["cpu_s_publish_to_db_done"] = {
                name: round(self.cpu_after[name] - self.cpu_before.get(name, 0.0), 2) for name in self.cpu_after
            }
        began = time.time()
        described = self.api("GET", f"/api/v1/broadcasts/{bid}")
        figures["get_broadcast_ms"] = round((time.time() - began) * 1000, 1)
        figures["get_broadcast_deliveries"] = len(described["deliveries"])
        return figures

    def stop(self) -> None:
        """Stop the processes (SIGTERM, then SIGKILL), the observer, and drop a private PostgreSQL schema."""
        for _name, process in reversed(self.procs):
            process.send_signal(signal.SIGTERM)
        for _name, process in reversed(self.procs):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if hasattr(self, "observer"):
            self.observer.close()
        self.platform.close()
        if self.schema:
            _pg_execute(self._admin_url, f"DROP SCHEMA {self.schema} CASCADE")


def make_clip(folder: Path, seconds: float) -> tuple[Path, str, int]:
    """A speech-band tone as MP3 (what the media pipeline would deliver)."""
    path = folder / "clip.mp3"
    run_ffmpeg(
        ["-y", "-f", "lavfi", "-i", f"sine=frequency=800:duration={seconds}", "-ac", "1", "-ar", "22050",
         "-b:a", "48k", str(path)],
    )  # fmt: skip
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), int(seconds * 1000)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (from /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds each group of processes, and the rest of the machine ("others"), used since it was made."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        self.machine_before = machine_busy_seconds()

    def used(self) -> dict[str, float]:
        """Seconds per group so far, rounded to 10 ms."""
        spent = {name: round(cpu_seconds(pids) - self.before[name], 2) for name, pids in self.groups.items()}
        spent["others"] = round(machine_busy_seconds() - self.machine_before - sum(spent.values()), 2)
        return spent


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used so far (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (the simulator's or gunicorn's workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def pct(values: list[float], q: float) -> float:
    """q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Simulator:
    """`speaker-agent simulate` as a child process, with its JSON status lines read in a thread."""

    def __init__(self, args: argparse.Namespace, broker_url: str, prefix: str, key: KeyPair, work: Path) -> None:
        profile = ["-m", "cProfile", "-o", str(args.profile_simulator)] if args.profile_simulator else []
        command = [
            sys.executable, *profile, "-m", "speakers.cli", "--log-level", "WARNING",
            "simulate", "--count", str(args.count),
            "--broker-url", broker_url, "--server-key", key.public_b64(), "--prefix", prefix,
            "--region", COUNTY, "--region", TOWNSHIP, "--grids", str(grid_count(args.count)),
            "--id-prefix", "bench", "--ephemeral", "--connect-rate", str(args.connect_rate),
            "--status-every", "1", "--work-dir", str(work), "--processes", str(args.processes),
            "--time-sync-spacing", str(max(1.0, args.count / 4000)),
            *(["--shared-verify"] if args.shared_verify else []),
        ]  # fmt: skip
        env = dict(os.environ)
        if args.profile_burst:
            args.profile_burst.mkdir(parents=True, exist_ok=True)
            env["SPEAKER_AGENT_PROFILE_DIR"] = str(args.profile_burst)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.status: dict[str, Any] = {}
        self.first_rss: int | None = None
        self.peak_rss = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                status = json.loads(line)["status"]
                self.status = status
                if self.first_rss is None:
                    self.first_rss = status["rss_bytes"]
                self.peak_rss = max(self.peak_rss, status["rss_bytes"])

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)


def wait_until(condition: Any, timeout: float, what: str, *, fatal: bool = True, every: float = 0.2) -> bool:
    """Poll `condition` every `every` seconds until true; on timeout exit (fatal) or return False."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if fatal:
                raise SystemExit(f"timed out waiting for {what}")
            print(f"warning: timed out waiting for {what}", file=sys.stderr)
            return False
        time.sleep(every)
    return True


def speaker_figures(
    burst: list[tuple[float, Receipt]], count: int, published: float, start_at: float
) -> dict[str, Any]:
    """Latency, spread, acceptance and arrival-rate figures from one broadcast's receipts."""
    by_event: dict[str, list[Receipt]] = defaultdict(list)
    for _t, receipt in burst:
        by_event[receipt.event].append(receipt)
    starts = [r.at for r in by_event["started"]]
    if not starts:
        return {"started": 0, "missing": count, "other_events": {e: len(v) for e, v in by_event.items()}}
    latency = [(at - published) * 1000 for at in starts]
    deviation = [(at - start_at) * 1000 for at in starts]
    acks = [(r.at - published) * 1000 for r in by_event["acknowledged"]]
    offsets = [r.offset_ms for r in by_event["started"] if r.offset_ms is not None]
    started_ids = {r.speaker_id for r in by_event["started"]}
    seen: dict[str, list[str]] = defaultdict(list)
    for _t, receipt in burst:
        if receipt.speaker_id not in started_ids:
            seen[receipt.speaker_id].append(receipt.event)
    arrivals = sorted(t for t, _r in burst)
    peak, lo = 0, 0
    for hi, t in enumerate(arrivals):  # busiest one-second window
        while t - arrivals[lo] > 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return {
        "clock_offset_ms_p99_abs": round(pct([abs(o) for o in offsets], 99), 2) if offsets else None,
        "other_events": {f"{e}:{v[0].reason}": len(v) for e, v in by_event.items()
                         if e not in ("acknowledged", "started", "finished")},
        "acknowledged": len(by_event["acknowledged"]),
        "started": len(starts),
        "finished": len(by_event["finished"]),
        "late_starts": sum(1 for r in by_event["started"] if "late_ms" in r.detail),
        "missing": count - len(started_ids),
        "missing_detail": {
            "count_by_events": {",".join(k): sum(1 for e in seen.values() if tuple(e) == k)
                                for k in {tuple(v) for v in seen.values()}},
            "examples": sorted(seen)[:3],
        },
        "accepted_ms_min": round(min(acks), 1) if acks else None,
        "accepted_ms_p50": round(pct(acks, 50), 1) if acks else None,
        "accepted_ms_p99": round(pct(acks, 99), 1) if acks else None,
        "command_to_started_ms_p50": round(pct(latency, 50), 1),
        "command_to_started_ms_p99": round(pct(latency, 99), 1),
        "command_to_started_ms_max": round(max(latency), 1),
        "start_spread_ms_p50_abs": round(pct([abs(d) for d in deviation], 50), 2),
        "start_spread_ms_p99_abs": round(pct([abs(d) for d in deviation], 99), 2),
        "start_spread_ms_range": round(max(deviation) - min(deviation), 2),
        "receipts": len(burst),
        "receipts_per_s_peak": peak,
        "started_receipts_drained_s": round(max(t for t, r in burst if r.event == "started") - start_at, 2),
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    broker: Any = None
    server: Any = None
    simulator: Simulator | None = None
    if args.mqtt_url:
        broker_url, broker_name = args.mqtt_url, "external"
    elif args.mosquitto:
        broker = MosquittoProcess(work, max_connections=-1)
        broker.start()
        broker_url, broker_name = broker.url, "mosquitto (private process)"
    else:
        broker = EmbeddedBroker()
        broker.start()
        broker_url, broker_name = broker.url, "embedded (amqtt, in the benchmark process)"
    prefix = "bench" + uuid.uuid4().hex[:6]
    try:
        server = (RealServer if args.server == "real" else LibraryServer)(args, broker_url, prefix, work)
        server.start()
        simulator = Simulator(args, broker_url, prefix, server.key, work / "sim")
        started = time.monotonic()
        wait_until(lambda: server.online() >= args.count, args.connect_timeout, "every speaker online")
        connect_s = time.monotonic() - started
        spacing = max(1.0, args.count / 4000)
        wait_until(lambda: simulator.status.get("synced", 0) >= args.count, 60, "clock samples", fatal=False)
        time.sleep(16 * spacing + args.settle_s)  # a speaker's first four samples come within 15 x spacing
        waited = server.ready()
        if waited:
            time.sleep(args.settle_s)
        rss_idle = simulator.status["rss_bytes"]
        if args.profile_burst:
            simulator.process.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
        sim_pids = [simulator.process.pid, *children_of(simulator.process.pid)]
        broker_pids = [broker._process.pid] if isinstance(broker, MosquittoProcess) and broker._process else []
        groups = {"simulator": sim_pids, "broker": broker_pids, **server.groups()}
        if args.server == "real":
            groups["bench"] = [os.getpid()]
        window = CpuWindow(groups)
        load_before = os.getloadavg()
        published, bid, start_at = server.play()
        time.sleep(max(0.0, start_at - time.time()))
        cpu_window = window.used()
        clip_s = args.clip_seconds if args.server == "library" else server.clip["duration_ms"] / 1000
        server.wait_done(bid, args.count, max(0.0, start_at - time.time()) + clip_s + 30)
        time.sleep(0.5)
        if args.profile_burst:
            simulator.process.send_signal(signal.SIGUSR2)
            time.sleep(2)
        burst = [(t, r) for t, r in server.receipts if r.broadcast_id == bid]
        growth = simulator.peak_rss - (simulator.first_rss or 0)
        return {
            "speakers": args.count,
            "broker": broker_name,
            "signature_checks": "shared among identical commands" if args.shared_verify else "every speaker",
            "lead_ms": args.lead_ms,
            "clip_s": clip_s,
            "connect_s": round(connect_s, 1),
            **waited,
            "fully_synced": simulator.status.get("fully_synced"),
            "loadavg_before_publish": [round(x, 2) for x in load_before],
            **speaker_figures(burst, args.count, published, start_at),
            "cpu_s_publish_to_start": cpu_window,
            "rss_mb": round(rss_idle / 2**20, 1),
            "rss_peak_mb": round(simulator.peak_rss / 2**20, 1),
            "kb_per_speaker": round(simulator.peak_rss / args.count / 1024, 1),
            "kb_per_speaker_over_baseline": round(growth / args.count / 1024, 1),
            **server.server_figures(published, bid),
        }
    finally:
        if simulator is not None:
            simulator.stop()
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()
        if args.keep_work:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="simulated speakers (default 1000)")
    parser.add_argument("--mqtt-url", help="use this external broker (e.g. Mosquitto)")
    parser.add_argument("--mosquitto", action="store_true", help="start a private mosquitto process")
    parser.add_argument("--server", choices=["library", "real"], default="library",
                        help="library: speakers.server in this process (default); real: the server")  # fmt: skip
    parser.add_argument("--web", choices=["run", "gunicorn"], default="run",
                        help="real: `broadcast run` (default) or gunicorn -w 2 + `broadcast worker`")  # fmt: skip
    parser.add_argument("--database-url", help="with --server real: SQLAlchemy URL (default SQLite in the instance)")
    parser.add_argument("--lead-ms", type=int, default=950, help="start_at = publish time + this (default 950)")
    parser.add_argument("--clip-seconds", type=float, default=3.0, help="library: length of the played tone")
    parser.add_argument("--clip-text", default="请注意，这是一条县级测试广播。",
                        help="real: the notice spoken by espeak-ng (about 3 s)")  # fmt: skip
    parser.add_argument("--connect-rate", type=float, default=1000.0, help="simulator connections per second")
    parser.add_argument("--processes", type=int, default=1, help="simulator processes (default 1)")
    parser.add_argument("--settle-s", type=float, default=3.0, help="quiet time before the play")
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary folder (logs, instance)")
    parser.add_argument("--shared-verify", action="store_true",
                        help="simulated speakers share the signature check of byte-identical commands")  # fmt: skip
    parser.add_argument("--profile-simulator", type=Path, help="write the simulator's cProfile stats here")
    parser.add_argument("--profile-burst", type=Path, help="profile the simulator during the burst into this folder")
    args = parser.parse_args(argv)
    if args.server == "library" and (args.database_url or args.web != "run"):
        parser.error("--database-url and --web need --server real")
    if args.count < 1 or args.processes < 1 or args.lead_ms < 1:
        parser.error("--count, --processes and --lead-ms must be positive")
    return args


def main() -> None:
    """Parse arguments, run, print."""
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    # A `timeout` around the benchmark sends SIGTERM: leave through `finally`, which stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
