"""API read benchmark: the production shape (gunicorn -w 2) against a gunicorn hello-world in the same run.

    .venv/bin/python benchmarks/api_bench.py                      # SQLite in a temporary instance
    .venv/bin/python benchmarks/api_bench.py --database-url postgresql+psycopg://USER@HOST:5432/DB
    .venv/bin/python benchmarks/api_bench.py --profile            # cProfile of the same requests, in process

It seeds a generated county (21 townships, 189 villages, 1,344 grids, 10,000 speakers, imported through
`broadcast.services.imports`), makes one clip (espeak-ng) and two broadcasts with every delivery recorded (one
village, one township), starts `gunicorn -w 2` on free ports for the app, for the app with its rate limiter off
(the limiter's own cost is the difference), for the app with its read cache off (every read a miss: what a
read costs when the URL or the data changes each second) and for the hello-world WSGI app below, and drives
each with `wrk` (a Lua script adds the Bearer header and prints the figures) one after the other.
It prints requests per second, p50/p99 latency and the ratio to hello-world for each endpoint.
Target (issue 11): GET /api/v1/speakers?per_page=50 and GET /api/v1/broadcasts/<id> ≥ 1,500 rps, p99 ≤ 50 ms.
The rate limits are raised so the limiter never answers 429 (it still counts every request).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HIGH_LIMIT = "100000000/minute"
HELLO_BODY = b'{"hello": "world"}'
LUA = """
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, "
    .. "\\"non2xx\\": %%d, \\"socket_errors\\": %%d}\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The hello-world WSGI app every figure is compared with (gunicorn runs it as api_bench:hello_app)."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(HELLO_BODY)))])
    return [HELLO_BODY]


def app_without_limiter() -> Any:
    """The app with its rate limiter switched off: the limiter's own cost is the difference (gunicorn factory)."""
    from broadcast import create_app

    app = create_app()
    app.extensions["rate_limiter"].enabled = False
    return app


def app_without_read_cache() -> Any:
    """The app answering every read afresh (a cache that keeps nothing): the cost of a miss (gunicorn factory)."""
    from broadcast import create_app
    from broadcast.web.caches import TtlCache
    from broadcast.web.read_cache import READ_CACHE_BYTES

    app = create_app()
    app.extensions["api_reads"] = TtlCache(0.0, READ_CACHE_BYTES)
    return app


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it is true, or stop the benchmark after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _pg_schema(url: str) -> tuple[str, str]:
    """A private schema on the given PostgreSQL server, and the URL that uses it."""
    from sqlalchemy import create_engine, text

    schema = f"api_bench_{secrets.token_hex(4)}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return schema, url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"


def _drop_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def seed(instance: Path, settings: dict[str, str], speakers: int) -> dict[str, Any]:
    """Admin, county, clip and two broadcasts (a village, a township); returns the token and the paths to read."""
    from sqlalchemy import select, text, update

    from broadcast.models import Delivery, Region
    from broadcast.platform import Platform
    from broadcast.services import accounts, broadcasts, clips, imports
    from broadcast.setup import initialize
    from tests.broadcast.test_import import REGION_HEADERS, SPEAKER_HEADERS, county_rows, xlsx

    platform = Platform.from_settings(instance, settings)
    initialize(platform, "admin", secrets.token_urlsafe(18))
    region_rows, speaker_rows = county_rows(townships=21, villages=189, grids=1344, speakers=speakers)
    for kind, headers, rows in (("regions", REGION_HEADERS, region_rows), ("speakers", SPEAKER_HEADERS, speaker_rows)):
        with platform.db.transaction() as session:
            report = imports.run_import(session, kind, xlsx(headers, rows), user=None)
            assert report.ok, [p.line() for p in report.problems[:5]]
    ids: dict[str, int] = {}
    with platform.db.transaction() as session:
        admin = accounts.find_user(session, "admin")
        token = accounts.create_token(session, admin, actor="bench")
        clip = clips.from_text(
            session, platform.media_store, platform.media, "今晚有大风，请收好晾晒的衣物。", user=admin
        )
        for level in ("village", "township"):
            code = session.scalars(select(Region.code).where(Region.level == level).order_by(Region.code)).first()
            item = broadcasts.create(session, admin, platform.rules, clip_id=clip.id, targets=[code], source="api")
            ids[level] = item.id
            # Most speakers have played it: the deliveries carry their times, as a finished broadcast's do.
            now = time.time()
            session.execute(
                update(Delivery)
                .where(Delivery.broadcast_id == item.id, Delivery.id % 10 != 0)
                .values(state="finished", acknowledged_at=now, started_at=now + 1, finished_at=now + 5)
            )
        deliveries = {
            level: len(session.scalars(select(Delivery.id).where(Delivery.broadcast_id == i)).all())
            for level, i in ids.items()
        }
    if platform.db.engine.dialect.name == "postgresql":
        with platform.db.engine.begin() as connection:  # what autovacuum does soon after an import this size
            connection.execute(text("ANALYZE"))
    platform.close()
    return {
        "token": token,
        "paths": {
            "speakers page (per_page=50)": "/api/v1/speakers?per_page=50",
            f"broadcast, village ({deliveries['village']} deliveries)": f"/api/v1/broadcasts/{ids['village']}",
            f"broadcast, township ({deliveries['township']} deliveries)": f"/api/v1/broadcasts/{ids['township']}",
        },
    }


class Gunicorn:
    """`gunicorn -w 2` on a free port, stopped on exit."""

    def __init__(self, app: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        command = [str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{self.port}",
                   "--pythonpath", str(Path(__file__).parent), app]  # fmt: skip
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.log = log

    def up(self, path: str, token: str) -> bool:
        """True once both workers can answer (a few requests reach each)."""
        if self.process.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{self.log.read_text(errors='replace')[-3000:]}")
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        try:
            for _ in range(4):
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our server
                    response.read()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM the master (it stops its workers) and wait."""
        self.process.terminate()
        self.process.wait(timeout=30)


def run_wrk(url: str, script: Path, args: argparse.Namespace) -> dict[str, float]:
    """One wrk run; requests per second, p50 and p99 in ms, and what went wrong."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    data = json.loads(line[4:])
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "non2xx": data["non2xx"],
        "socket_errors": data["socket_errors"],
    }


def profile(instance: Path, settings: dict[str, str], token: str, paths: dict[str, str], count: int) -> None:
    """cProfile of `count` requests per path through the app, then with its read cache off, in this process."""
    import cProfile
    import pstats

    os.environ.update({"BROADCAST_INSTANCE": str(instance), **{f"BROADCAST_{k}": v for k, v in settings.items()}})
    from broadcast import create_app

    headers = {"Authorization": f"Bearer {token}"}
    for kind, app in (("", create_app()), (", read cache off", app_without_read_cache())):
        client = app.test_client()
        for label, path in paths.items():
            assert client.get(path, headers=headers).status_code == 200
            began = time.perf_counter()
            for _ in range(count):
                client.get(path, headers=headers)
            plain = (time.perf_counter() - began) / count * 1000
            profiler = cProfile.Profile()
            began = time.perf_counter()
            profiler.enable()
            for _ in range(count):
                client.get(path, headers=headers)
            profiler.disable()
            per = (time.perf_counter() - began) / count * 1000
            print(f"\n=== {label}{kind}: {plain:.2f} ms per request in process, {per:.2f} ms profiled ===")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(28)


def main() -> int:
    """Seed, start both servers, drive them with wrk and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to use (a private schema); default SQLite")
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="hello-world and every endpoint, this many times")
    parser.add_argument("--profile", type=int, nargs="?", const=500, default=0, help="cProfile N requests instead")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.profile:
        print("wrk is not installed: install the Debian package `wrk` (apt-get install wrk) and run again.")
        return 2
    sys.path.insert(0, str(ROOT))
    schema = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = {"QUIET_HOURS": "", "API_READ_RATE_LIMIT": HIGH_LIMIT, "API_RATE_LIMIT": HIGH_LIMIT}
        if args.database_url:
            schema, settings["DATABASE_URL"] = _pg_schema(args.database_url)
        else:
            settings["DATABASE_URL"] = f"sqlite:///{work / 'bench.db'}"
        try:
            began = time.perf_counter()
            seeded = seed(work / "instance", settings, args.speakers)
            print(f"seeded {args.speakers} speakers and 2 broadcasts in {time.perf_counter() - began:.1f} s")
            if args.profile:
                profile(work / "instance", settings, seeded["token"], seeded["paths"], args.profile)
                return 0
            measure(work, settings, seeded, args)
        finally:
            if schema and args.database_url:
                _drop_schema(args.database_url, schema)
    return 0


def measure(work: Path, settings: dict[str, str], seeded: dict[str, Any], args: argparse.Namespace) -> None:
    """Start the app and hello-world under gunicorn -w 2 and run wrk against each, `rounds` times."""
    env = {**os.environ, "BROADCAST_INSTANCE": str(work / "instance"), "BROADCAST_LOG_LEVEL": "WARNING"}
    env.update({f"BROADCAST_{k}": v for k, v in settings.items()})
    app = Gunicorn("broadcast:create_app()", env, work / "app.log")
    bare = Gunicorn("api_bench:app_without_limiter()", env, work / "bare.log")
    fresh = Gunicorn("api_bench:app_without_read_cache()", env, work / "fresh.log")
    hello = Gunicorn("api_bench:hello_app", env, work / "hello.log")
    script = work / "bearer.lua"
    script.write_text(LUA % seeded["token"])
    load = os.getloadavg()[0]
    paths = list(seeded["paths"].items())
    runs = [("hello-world", hello, "/")] + [(label, app, path) for label, path in paths]
    runs += [(f"{label}, limiter off", bare, path) for label, path in paths[:2]]
    runs += [(f"{label}, read cache off", fresh, path) for label, path in paths]
    try:
        for server in (app, bare, fresh):
            wait_until(lambda s=server: s.up(paths[0][1], seeded["token"]), 90, "the app under gunicorn")
        wait_until(lambda: hello.up("/", seeded["token"]), 30, "hello-world under gunicorn")
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for label, server, path in runs:
                results.setdefault(label, []).append(run_wrk(server.base + path, script, args))
    finally:
        for server in (app, bare, fresh, hello):
            server.stop()
    database = "PostgreSQL" if "postgresql" in settings["DATABASE_URL"] else "SQLite"
    print(f"\n{database}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} round(s), "
          f"load average before: {load:.1f}, after: {os.getloadavg()[0]:.1f}")  # fmt: skip
    hello_rps = statistics.median(r["rps"] for r in results["hello-world"])
    print(f"{'endpoint':52} {'rps':>16} {'p50 ms':>8} {'p99 ms':>8} {'× hello':>8} {'errors':>7}")
    for label, figures in results.items():
        rps = statistics.median(r["rps"] for r in figures)
        spread = f"{min(r['rps'] for r in figures):.0f}-{max(r['rps'] for r in figures):.0f}"
        p50 = statistics.median(r["p50_ms"] for r in figures)
        p99 = max(r["p99_ms"] for r in figures)
        errors = int(sum(r["non2xx"] + r["socket_errors"] for r in figures))
        print(f"{label:52} {rps:7.0f} ({spread:>7}) {p50:8.2f} {p99:8.2f} {rps / hello_rps:8.2f} {errors:7d}")
    print("target: speakers page and broadcast ≥ 1,500 rps, p99 ≤ 50 ms (rps: median of the rounds, p99: worst)")


if __name__ == "__main__":
    sys.exit(main())
