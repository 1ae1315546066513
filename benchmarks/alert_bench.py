"""Alert benchmark: a CAP alert posted to the real server, heard on N simulated speakers.

    .venv/bin/python benchmarks/alert_bench.py --count 1000 --mosquitto --processes 2
    .venv/bin/python benchmarks/alert_bench.py --count 10000 --mosquitto --processes 2 \\
        [--web gunicorn] [--database-url postgresql+psycopg://USER@HOST:5432/DB]
        [--lead-ms 950] [--tone-lead-ms 700] [--tone-s 2]

It starts a private Mosquitto (or uses --mqtt-url), a temporary instance of the server run as real processes
(`broadcast run`, or gunicorn + `broadcast worker`; the set-up of `fanout_bench.py --server real`), and the
fleet simulator (`speaker-agent simulate`) with every speaker in one county. It waits until every speaker is
online and has acknowledged its schedule snapshot (which carries the attention tone in its keep list: the
tone is in the speakers' cache before the alert), then posts one red CAP alert for the county to
POST /api/v1/alerts (signed with X-Signature) and prints, per speaker, from just before that POST:

- tone started: the attention tone's `started` receipt (the first sound) — p50/p99/max
- speech started: the speech's `started` receipt — p50/p99/max (due the instant the tone ends, which it follows)
- tone accepted: when each speaker had verified and queued the tone's command (its acknowledgement)
- speech sent: when the speech's command (synthesized with the offline TTS) reached the broker
- coverage: speakers that started the tone / the speech, and the server's own tally (GET /api/v1/alerts/<id>,
  read every 2 s as the console does) with how long after the POST it was complete (`server_tally_after_s`)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fanout_bench import (
    COUNTY,
    CpuWindow,
    RealServer,
    Simulator,
    children_of,
    pct,
    wait_until,
)

from broadcast.services import alert_tone
from speakers.messages import Receipt
from speakers.mosquitto_proc import MosquittoProcess

CHINA = timezone(timedelta(hours=8))
CAP_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>bench@warning.example.cn</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <headline>暴雨红色预警</headline>
    <description>预计未来3小时内我县将出现100毫米以上降雨。</description>
    <instruction>请远离河道，转移到安全地带。</instruction>
    <area>
      <areaDesc>基准县</areaDesc>
      <geocode><valueName>行政区划代码</valueName><value>{county}</value></geocode>
    </area>
  </info>
</alert>
"""


class AlertServer(RealServer):
    """The real server with the warning service configured: an HMAC secret for the warning feed."""

    def __init__(self, args: argparse.Namespace, broker_url: str, prefix: str, work: Path) -> None:
        self.secret = secrets.token_hex(16)
        os.environ["BROADCAST_ALERT_HMAC_SECRET"] = self.secret  # RealServer hands os.environ to its processes
        os.environ.setdefault("BROADCAST_LOG_LEVEL", "INFO")  # RealServer waits for the worker's "worker started"
        super().__init__(args, broker_url, prefix, work)

    def post_alert(self) -> tuple[float, dict[str, Any], float]:
        """POST one red CAP alert for the county; return (time just before, the 202 body, time of the answer)."""
        sent = datetime.now(CHINA).replace(microsecond=0).isoformat()
        body = CAP_TEMPLATE.format(identifier=f"BENCH-{uuid.uuid4().hex[:12]}", sent=sent, county=COUNTY).encode()
        signature = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(self.base + "/api/v1/alerts", data=body, method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/cap+xml")
        request.add_header("X-Signature", signature)
        before = time.time()
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - our server
            reply = json.loads(response.read())
        return before, reply, time.time()

    def command_seen(self, broadcast_id: int) -> float | None:
        """When the county command of this broadcast reached the observer (None if it has not)."""
        for seen, payload in list(self.commands):
            body = json.loads(json.loads(payload)["body"])
            if body["cmd"].get("broadcast_id") == str(broadcast_id):
                return seen
        return None

    def accepted(self, broadcast_id: int) -> dict[str, float]:
        """When each speaker had verified and queued a broadcast's command: its `acknowledged` receipt, or the
        acknowledgement it folded into a later receipt (`detail.acknowledged_at`)."""
        found: dict[str, float] = {}
        for _t, r in list(self.receipts):
            if r.broadcast_id == str(broadcast_id):
                at = r.at if r.event == "acknowledged" else r.detail.get("acknowledged_at")
                if isinstance(at, int | float):
                    found[r.speaker_id] = float(at)
        return found

    def started(self, broadcast_id: int) -> dict[str, Receipt]:
        """Each speaker's started receipt of a broadcast, as the observer saw it."""
        return {
            r.speaker_id: r for _t, r in self.receipts if r.broadcast_id == str(broadcast_id) and r.event == "started"
        }


def figures(label: str, values: list[float]) -> dict[str, Any]:
    """p50/p99/max in milliseconds."""
    if not values:
        return {f"{label}_ms_p50": None, f"{label}_ms_p99": None, f"{label}_ms_max": None}
    return {
        f"{label}_ms_p50": round(pct(values, 50), 1),
        f"{label}_ms_p99": round(pct(values, 99), 1),
        f"{label}_ms_max": round(max(values), 1),
    }


def tone_cached(work: Path, sha256: str) -> bool:
    """True when the simulator's shared media cache holds the tone."""
    return any(path.name == sha256 for path in (work / "sim").rglob(sha256))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="alert-bench-"))
    broker: MosquittoProcess | None = None
    server: AlertServer | None = None
    simulator: Simulator | None = None
    if args.mqtt_url:
        broker_url, broker_name = args.mqtt_url, "external"
    else:
        broker = MosquittoProcess(work, max_connections=-1)
        broker.start()
        broker_url, broker_name = broker.url, "mosquitto (private process)"
        if args.broker_nice and broker._process is not None:  # the broker first on a shared box (docs/operations.md)
            os.setpriority(os.PRIO_PROCESS, broker._process.pid, args.broker_nice)
            broker_name += f", nice {args.broker_nice}"
    prefix = "alert" + uuid.uuid4().hex[:6]
    try:
        server = AlertServer(args, broker_url, prefix, work)
        server.start()
        simulator = Simulator(args, broker_url, prefix, server.key, work / "sim")
        began = time.monotonic()
        wait_until(lambda: server.online() >= args.count, args.connect_timeout, "every speaker online")
        connect_s = time.monotonic() - began
        wait_until(lambda: simulator.status.get("synced", 0) >= args.count, 60, "clock samples", fatal=False)
        time.sleep(16 * max(1.0, args.count / 4000) + args.settle_s)  # the first clock samples come within this
        waited = server.ready()  # every speaker acknowledged a snapshot (with the tone in its keep list)
        time.sleep(args.settle_s)
        with server.platform.db.transaction() as session:  # the clip the snapshots' keep list names
            sha = alert_tone.tone_clip(session, server.platform).sha256
        cached_before = tone_cached(work, sha)

        sim_pids = [simulator.process.pid, *children_of(simulator.process.pid)]
        broker_pids = [broker._process.pid] if broker is not None and broker._process else []
        groups = {"simulator": sim_pids, "broker": broker_pids, **server.groups(), "bench": [os.getpid()]}
        window, first_second = CpuWindow(groups), {}
        if args.profile_burst:  # cProfile in the simulator, from before the POST until every tone started
            simulator.process.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
        sampler = threading.Timer(1.0, lambda: first_second.update(window.used()))  # the first second's CPU
        sampler.start()
        posted, reply, answered = server.post_alert()
        sampler.join()
        alert = server.api("GET", f"/api/v1/alerts/{reply['alert_id']}")
        tone_id, speech_id = alert["tone_broadcast_id"], reply.get("broadcast_id")
        online = server.online()
        wait_until(lambda: len(server.started(tone_id)) >= online, 60, "every tone started", fatal=False)
        if args.profile_burst:
            simulator.process.send_signal(signal.SIGUSR2)
            time.sleep(2)
        if speech_id is not None:
            wait_until(lambda: len(server.started(speech_id)) >= online, 90, "every speech started", fatal=False)
        tone = server.started(tone_id)
        speech = server.started(speech_id) if speech_id is not None else {}
        tone_sent, speech_sent = server.command_seen(tone_id), server.command_seen(speech_id or -1)
        # the server's own tally, once its worker has written the receipts; read every 2 s as the console's
        # alert page does (each read is the alert with its 10,000 deliveries: polled back to back, the reads
        # would take the server's CPU from the worker writing the receipts)
        wait_until(
            lambda: (
                (server.api("GET", f"/api/v1/alerts/{reply['alert_id']}")["coverage"] or {}).get("sounded", 0)
                >= len(speech)
            ),
            180,
            "the server's coverage to catch up",
            fatal=False,
            every=2.0,
        )
        tally_s = time.time() - posted
        final = server.api("GET", f"/api/v1/alerts/{reply['alert_id']}")
        coverage = {k: v for k, v in (final["coverage"] or {}).items() if k != "townships"}
        tone_coverage = {k: v for k, v in (final["tone_coverage"] or {}).items() if k != "townships"}
        return {
            "speakers": args.count,
            "online_at_alert": online,
            "broker": broker_name,
            "server": f"real ({args.web}, {server.platform.db.engine.dialect.name})",
            "signature_checks": "shared among identical commands" if args.shared_verify else "every speaker",
            "start_lead_ms": args.lead_ms,
            "tone_lead_ms": args.tone_lead_ms,
            "cpu_s_first_second": first_second,
            "tone_s": args.tone_s,
            "connect_s": round(connect_s, 1),
            **waited,
            "tone_cached_before_alert": cached_before,
            "action": f"{reply['action']} ({reply['reason']})",
            "post_alert_ms": round((answered - posted) * 1000, 1),
            "tone_command_at_broker_ms": round((tone_sent - posted) * 1000, 1) if tone_sent else None,
            "speech_command_at_broker_ms": round((speech_sent - posted) * 1000, 1) if speech_sent else None,
            **figures("tone_started", [(r.at - posted) * 1000 for r in tone.values()]),
            **figures("speech_started", [(r.at - posted) * 1000 for r in speech.values()]),
            **figures("tone_accepted", [(at - posted) * 1000 for at in server.accepted(tone_id).values()]),
            "tone_started_speakers": len(tone),
            "speech_started_speakers": len(speech),
            "tone_late_starts": sum(1 for r in tone.values() if "late_ms" in r.detail),
            "server_tally_after_s": round(tally_s, 1),
            "server_coverage_speech": coverage,
            "server_coverage_tone": tone_coverage,
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
    """The command line (the fan-out benchmark's, for the parts they share)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="simulated speakers (default 1000)")
    parser.add_argument("--mqtt-url", help="use this external broker instead of a private mosquitto")
    parser.add_argument("--mosquitto", action="store_true", help="start a private mosquitto process (the default)")
    parser.add_argument("--web", choices=["run", "gunicorn"], default="run",
                        help="`broadcast run` (default) or gunicorn -w 2 + `broadcast worker`")  # fmt: skip
    parser.add_argument("--database-url", help="SQLAlchemy URL (default SQLite in the instance)")
    parser.add_argument("--lead-ms", type=int, default=950, help="the server's START_LEAD_MS (default 950)")
    parser.add_argument("--tone-lead-ms", type=int, default=700, help="the server's ALERT_TONE_LEAD_MS (default 700)")
    parser.add_argument(
        "--tone-s", type=float, default=2.0, help="the server's ALERT_TONE_S (default 2, as the server's)"
    )
    parser.add_argument("--connect-rate", type=float, default=1000.0, help="simulator connections per second")
    parser.add_argument("--processes", type=int, default=1, help="simulator processes (default 1)")
    parser.add_argument("--settle-s", type=float, default=3.0, help="quiet time before the alert")
    parser.add_argument("--connect-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary folder (logs, instance)")
    parser.add_argument("--shared-verify", action="store_true",
                        help="simulated speakers share the signature check of byte-identical commands")  # fmt: skip
    parser.add_argument("--broker-nice", type=int, default=0,
                        help="the private mosquitto's nice value (-10: it goes first on the CPUs; root)")  # fmt: skip
    parser.add_argument("--profile-burst", type=Path, help="profile the simulator around the alert into this folder")
    args = parser.parse_args(argv)
    if args.count < 1 or args.processes < 1 or args.lead_ms < 1 or args.tone_lead_ms < 1:
        parser.error("--count, --processes, --lead-ms and --tone-lead-ms must be positive")
    # the server processes inherit these
    os.environ["BROADCAST_ALERT_TONE_LEAD_MS"] = str(args.tone_lead_ms)
    os.environ["BROADCAST_ALERT_TONE_S"] = str(args.tone_s)
    # what the shared RealServer and Simulator read
    args.server, args.clip_text, args.profile_simulator = "real", "请注意。", None
    return args


def main() -> None:
    """Parse arguments, run, print."""
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `timeout` around it still stops every child
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
