"""Time to start of a small clip fetched from a busy web tier vs carried inline in the command.

Starts `broadcast run` (waitress, 4 threads) on a throw-away instance with the demo county and one real
`speaker-agent`, then, while a burst of API broadcasts to another township keeps the web tier busy, sends, with
`broadcast say`, a routine notice (its clip fetched over HTTP) and an urgent one (inline, `media_b64`).
Each new clip is spoken by espeak-ng, so neither is cached. Prints, for each, how late the speaker started
after the broadcast's start time and when its acknowledgement arrived.

    .venv/bin/python benchmarks/delivery_bench.py [--burst 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SPEAKER = "spk-42122410420101-1"
DALU = "421224205000"  # another township: the speaker measured is not in it


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - our own http:// URL
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("timed out")


def _prepare(tmp: Path, port: int, mqtt_port: int) -> tuple[dict[str, str], str, Path]:
    from broadcast import demo
    from broadcast.platform import Platform
    from broadcast.services import accounts, provisioning
    from broadcast.setup import initialize

    values = {
        "TOPIC_PREFIX": "bench" + secrets.token_hex(3),
        "QUIET_HOURS": "",
        "TTS_ENGINES": "espeak",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MQTT_PORT": str(mqtt_port),
        "START_LEAD_MS": "500",  # a short lead: a fetch slower than this starts late
    }
    instance = tmp / "instance"
    platform = Platform.from_settings(instance, values)
    initialize(platform, "admin", "admin-password-123")
    with platform.db.transaction() as session:
        demo.seed(session)
        token = accounts.create_token(session, accounts.find_user(session, "admin"))
        config = provisioning.provision(session, platform, SPEAKER, state_root=tmp / "agents")
    path = tmp / "speaker.json"
    path.write_text(config.to_json())
    platform.close()
    env = {**os.environ, "BROADCAST_INSTANCE": str(instance), **{f"BROADCAST_{k}": v for k, v in values.items()}}
    return env, token, path


def _burst(base: str, token: str, clip_id: int, count: int) -> threading.Thread:
    def fire() -> None:
        threads = [
            threading.Thread(
                target=_http,
                args=("POST", base + "/api/v1/broadcasts", token, {"clip_id": clip_id, "targets": [DALU]}),
            )
            for _ in range(count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    thread = threading.Thread(target=fire)
    thread.start()
    return thread


def _one(base: str, token: str, env: dict[str, str], priority: str, burst: int, filler: int, n: int) -> float:
    """Seconds the speaker started after the broadcast's start time (0 = on time)."""
    load = _burst(base, token, filler, burst)
    time.sleep(1.0)  # let the burst fill the web tier's queue before the measured notice goes out
    # Sent from the shell, as an alert or a duty officer would: only the media fetch meets the busy web tier.
    said = subprocess.run(
        [
            str(BIN / "broadcast"),
            "say",
            f"第{n}条{priority}测试通知，请注意。",
            "--to",
            SPEAKER,
            "--priority",
            priority,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    broadcast_id = said.stdout.strip().splitlines()[0]
    url = f"{base}/api/v1/broadcasts/{broadcast_id}"
    load.join()

    def ended() -> dict[str, Any] | None:
        body = _http("GET", url, token)[1]
        delivery = body["deliveries"][0]
        done = delivery["state"] in ("finished", "failed", "missed", "rejected")
        return {**delivery, "start_at": body["start_at"]} if done else None

    delivery = _wait(ended, 180)
    return (delivery["started_at"] or float("nan")) - delivery["start_at"]


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=200, help="API broadcasts fired during each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        port, mqtt_port = _port(), _port()
        env, token, config = _prepare(tmp, port, mqtt_port)
        base = f"http://127.0.0.1:{port}"
        log = (tmp / "server.log").open("wb")
        server = subprocess.Popen(
            [str(BIN / "broadcast"), "run", "--port", str(port), "--mqtt-port", str(mqtt_port), "--threads", "4"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        agent = None
        try:
            _wait(lambda: _http("GET", base + "/api/v1/time", token)[0] == 200, 60)
            agent = subprocess.Popen(
                [str(BIN / "speaker-agent"), "run", "--config", str(config), "--sink", str(tmp / "sink")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait(lambda: any(s["online"] for s in _http("GET", base + "/api/v1/speakers", token)[1]["items"]), 60)
            _status, filler = _http("POST", base + "/api/v1/clips", token, {"text": "背景测试。"})
            results: dict[str, list[float]] = {"normal": [], "urgent": []}
            for n in range(args.rounds):
                for priority in ("normal", "urgent"):
                    results[priority].append(_one(base, token, env, priority, args.burst, filler["id"], n))
            for priority, label in (("normal", "fetched over HTTP"), ("urgent", "inline in the command")):
                values = results[priority]
                print(
                    f"{priority:7s} ({label}): start late by median {statistics.median(values):.2f} s, "
                    f"worst {max(values):.2f} s over {len(values)} runs, burst of {args.burst} API broadcasts"
                )
        finally:
            for proc in (agent, server):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
            log.close()


if __name__ == "__main__":
    main()
