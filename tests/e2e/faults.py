"""Fault injection with real processes: a deployment whose broker, web tier and worker die by SIGKILL at chosen
moments and come back, attacks with a speaker's own broker account, and the accounting of what the speakers'
sinks played against what the database says (used by tests/e2e/test_faults.py and benchmarks/chaos_bench.py).

The broker runs in a process of its own so it can be killed: the embedded amqtt broker
(`python -m tests.e2e.faults broker FOLDER PORT`) or Mosquitto with the generated two-listener files.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.procs import Proc, exe, http, timeline, url_up, wait_for

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SERVER_USER, SERVER_PASSWORD = "vb-server", "chaos-" + secrets.token_hex(8)
FINAL = {"finished", "preempted", "failed", "missed", "rejected"}
SINK_END = {"finished": "finished", "preempted": "preempted", "failed": "failed", "missed": "missed",
            "stopped": "failed"}  # fmt: skip


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def readable_dir() -> Path:
    """A folder a Mosquitto that dropped to the `mosquitto` user can read (pytest's tmp is 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix="vb-chaos-"))
    os.chmod(folder, 0o750)  # noqa: S103  (group mosquitto only, like /etc/mosquitto)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            os.chown(folder, 0, grp.getgrnam("mosquitto").gr_gid)
    return folder


class BrokerProc:
    """A broker process on fixed ports that can be killed with SIGKILL and started again on the same ports."""

    def __init__(self, kind: str, folder: Path, logs: Path) -> None:
        from speakers.mosquitto import Listeners

        self.kind = kind
        self.folder = folder
        self.logs = logs
        self.listeners = Listeners(speaker_port=free_port(), server_port=free_port())
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def speaker_url(self) -> str:
        """Where speakers connect."""
        return f"mqtt://127.0.0.1:{self.listeners.speaker_port}"

    @property
    def server_url(self) -> str:
        """Where web and worker connect (the same listener on the embedded broker)."""
        port = self.listeners.server_port if self.kind == "mosquitto" else self.listeners.speaker_port
        return f"mqtt://127.0.0.1:{port}"

    def ports(self) -> list[int]:
        """The ports this broker listens on."""
        if self.kind == "mosquitto":
            return [self.listeners.speaker_port, self.listeners.server_port]
        return [self.listeners.speaker_port]

    def start(self) -> None:
        """Start it and wait until every listener accepts connections."""
        from speakers.mosquitto_proc import mosquitto_binary

        self.starts += 1
        log = self.logs / f"broker-{self.starts}.log"
        if self.kind == "mosquitto":
            args = [str(mosquitto_binary()), "-c", str(self.folder / "village-broadcast.conf")]
        else:
            args = [sys.executable, "-m", "tests.e2e.faults", "broker", str(self.folder), str(self.ports()[0])]
        self.proc = Proc(args, log, cwd=ROOT)
        wait_for(lambda: all(_listening(p) for p in self.ports()) or not self.proc_alive(), 30, "the broker")
        assert self.proc_alive(), self.proc.output()

    def proc_alive(self) -> bool:
        """True while the broker process runs."""
        return self.proc is not None and self.proc.alive()

    def kill(self) -> None:
        """SIGKILL: every session, queued message and retained state in memory is gone."""
        if self.proc is not None:
            self.proc.stop(signal.SIGKILL)

    def stop(self) -> None:
        """A clean stop (teardown)."""
        if self.proc is not None:
            self.proc.stop()


@dataclass
class Chaos:
    """A deployment of real processes: broker, web (waitress), two `broadcast worker`s, `speaker-agent`s."""

    tmp: Path
    broker: BrokerProc
    platform: Any
    env: dict[str, str]
    token: str
    web_port: int
    configs: dict[str, Path] = field(default_factory=dict)
    web: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    agents: dict[str, Proc] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # what was done when (printed on failure)
    attacks: list[list[int]] = field(default_factory=list)  # CONNACK codes of each attack
    forged: list[str] = field(default_factory=list)  # broadcast ids of forged and foreign commands sent
    _count: int = 0

    @property
    def base(self) -> str:
        """The web tier's URL."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def prefix(self) -> str:
        """The deployment's topic prefix."""
        return self.env["BROADCAST_TOPIC_PREFIX"]

    def note(self, text: str) -> None:
        """Remember one fault or step, with its time."""
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        logger.info("chaos: %s", text)

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}-{self._count}"

    def sink(self, speaker_id: str) -> Path:
        """Where an agent's file sink writes."""
        return self.tmp / "sinks" / speaker_id

    def cache_dir(self, speaker_id: str) -> Path:
        """Where an agent keeps fetched media."""
        return Path(json.loads(self.configs[speaker_id].read_text())["cache_dir"])

    # -- processes -----------------------------------------------------------------------------------

    def start_web(self) -> Proc:
        """The web tier in a process of its own (so it can be killed), answering on the same port each time."""
        args = [exe("waitress-serve"), "--listen", f"127.0.0.1:{self.web_port}", "--threads", "8"]
        self.web = Proc([*args, "--call", "broadcast:create_app"], self.tmp / f"{self._name('web')}.log", self.env)
        wait_for(lambda: url_up(self.base + "/api/v1/time") or not self.web.alive(), 60, "the web tier")  # type: ignore[union-attr]
        assert self.web.alive(), self.web.output()
        self.note("web up")
        return self.web

    def kill_web(self) -> None:
        """SIGKILL the web tier."""
        if self.web is not None:
            self.web.stop(signal.SIGKILL)
            self.note("web killed")

    def start_worker(self) -> Proc:
        """One more `broadcast worker` (the first holds the lease, others stand by)."""
        proc = Proc([exe("broadcast"), "worker"], self.tmp / f"{self._name('worker')}.log", self.env)
        self.workers.append(proc)
        return proc

    def active_worker(self) -> Proc | None:
        """The worker process holding the lease (its heartbeat names its pid)."""
        from sqlalchemy import select

        from broadcast.models import WorkerHeartbeat

        with self.platform.db.transaction() as session:
            pids = set(session.scalars(select(WorkerHeartbeat.pid)))
        return next((w for w in self.workers if w.alive() and w.popen.pid in pids), None)

    def kill_worker(self) -> None:
        """SIGKILL the worker that holds the lease, then start a new standby."""
        active = self.active_worker() or next((w for w in self.workers if w.alive()), None)
        if active is not None:
            active.stop(signal.SIGKILL)
            self.note(f"worker {active.popen.pid} killed")
        self.start_worker()

    def start_agent(self, speaker_id: str) -> Proc:
        """A real `speaker-agent run` with a file sink."""
        args = [exe("speaker-agent"), "run", "--config", str(self.configs[speaker_id])]
        proc = Proc([*args, "--sink", str(self.sink(speaker_id))], self.tmp / f"{self._name(speaker_id)}.log")
        self.agents[speaker_id] = proc
        return proc

    def online(self, speaker_id: str) -> bool:
        """What the worker recorded of a speaker's connection."""
        from broadcast.models import Speaker

        with self.platform.db.transaction() as session:
            speaker = session.get(Speaker, speaker_id)
            return bool(speaker and speaker.online)

    def stop(self) -> None:
        """Stop everything (teardown)."""
        for proc in [*self.agents.values(), *self.workers, *([self.web] if self.web else [])]:
            proc.stop(signal.SIGKILL if proc in self.workers else signal.SIGTERM)
        self.broker.stop()
        self.platform.close()

    # -- API -----------------------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any], *, within: float = 60) -> dict[str, Any]:
        """POST through the API, retrying while the web tier is down (it may have been killed)."""
        deadline = time.monotonic() + within
        while True:
            try:
                status, answer = http("POST", self.base + path, self.token, body)
            except OSError as exc:  # connection refused or reset: the web tier is being killed or restarted
                if time.monotonic() > deadline:
                    raise AssertionError(f"POST {path}: web tier down for {within} s") from exc
                time.sleep(0.1)
                continue
            assert status == 201, (status, answer)
            return answer


def prepare(tmp: Path, kind: str, speakers: list[str], *, database_url: str, **settings: str) -> Chaos:
    """An initialized instance (demo county, admin token), the speakers provisioned, the broker files written."""
    from broadcast import demo
    from broadcast.platform import Platform
    from broadcast.services import accounts, provisioning
    from broadcast.setup import initialize
    from speakers.mosquitto import write_mosquitto_files

    folder = readable_dir() if kind == "mosquitto" else tmp / "broker"
    broker = BrokerProc(kind, folder, tmp)
    web_port = free_port()
    values = {
        "DATABASE_URL": database_url,
        "MQTT_URL": broker.server_url,
        "MQTT_USERNAME": SERVER_USER,
        "MQTT_PASSWORD": SERVER_PASSWORD,
        "TOPIC_PREFIX": "chaos" + secrets.token_hex(3),
        "PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "QUIET_HOURS": "",
        "TTS_ENGINES": "espeak",
        "LEASE_POLL_S": "0.5",
        "RESEND_FIRST_S": "1",
        "RESEND_MAX_S": "4",
        "MQTT_TIMEOUT_S": "2",
        "LOG_LEVEL": "INFO",
        **dict.fromkeys(("API_RATE_LIMIT", "API_READ_RATE_LIMIT", "LOGIN_RATE_LIMIT"), "100000/minute"),
        **settings,
    }
    instance = tmp / "instance"
    env = {"BROADCAST_INSTANCE": str(instance), **{f"BROADCAST_{k}": v for k, v in values.items()}}
    platform = Platform.from_settings(instance, values)
    initialize(platform, "admin", "admin-password-123")
    chaos = Chaos(tmp, broker, platform, env, "", web_port)
    with platform.db.transaction() as session:
        demo.seed(session)
        chaos.token = accounts.create_token(session, accounts.find_user(session, "admin"))
        for speaker_id in speakers:
            config = json.loads(
                provisioning.provision(session, platform, speaker_id, state_root=tmp / "agents").to_json()
            )
            chaos.configs[speaker_id] = tmp / f"{speaker_id}.json"
            chaos.configs[speaker_id].write_text(json.dumps({**config, "broker_url": broker.speaker_url}))
        accesses = provisioning.broker_accesses(session)
    write_mosquitto_files(
        folder, accesses, SERVER_USER, SERVER_PASSWORD, prefix=chaos.prefix, listeners=broker.listeners
    )
    return chaos


# -- attacks with a speaker's own account ---------------------------------------------------------------


def attack(chaos: Chaos, attacker: str, victim: str) -> list[int]:
    """With `attacker`'s password: take over the victim's and the worker's client ids, leave wills on foreign
    topics; returns the CONNACK codes (0 = accepted; Mosquitto's speaker listener renames the client instead)."""
    from speakers.transport.base import BrokerAddress
    from speakers.transport.codec import connect_packet

    config = json.loads(chaos.configs[attacker].read_text())
    user, password, p = config["username"], config["password"], chaos.prefix
    tries: list[tuple[str, tuple[str, bytes, int, bool] | None]] = [
        (victim, None),
        (f"vb-worker-{p}", None),
        *[(attacker, (topic, b"forged-will", 1, True)) for topic in (
            f"{p}/state/{victim}", f"{p}/receipt/{victim}", f"{p}/cmd/speaker/{victim}")],
    ]  # fmt: skip
    address = BrokerAddress.parse(chaos.broker.speaker_url)
    codes = []
    for client_id, will in tries:
        try:
            with socket.create_connection((address.host, address.port), timeout=5) as sock:
                packet = connect_packet(client_id, keepalive=30, clean_session=True, username=user,
                                        password=password, will=will)  # fmt: skip
                sock.sendall(packet)
                reply = sock.recv(4)
                codes.append(reply[3] if len(reply) == 4 else -1)
        except OSError:
            codes.append(-1)  # the broker was down at that moment (it is being killed too)
    chaos.note(f"{attacker} attacked {victim}: CONNACK codes {codes}")
    chaos.attacks.append(codes)
    return codes


def forge(chaos: Chaos, victims: list[str], broadcast_ids: list[str]) -> None:
    """Publish, with the server's broker account, play commands no speaker may play: signed by a stranger's
    key (forged), and signed by the real key but addressed to another speaker (foreign)."""
    from speakers import protocol
    from speakers.messages import Play
    from speakers.protocol import Target
    from speakers.signing import KeyPair
    from speakers.transport import connect

    real = KeyPair.load(chaos.platform.signing_key_path)
    stranger = KeyPair.generate()
    now = time.time()
    # A broker the plan killed comes back within seconds: wait for it, as an attacker would.
    client = connect(chaos.broker.server_url, client_id="chaos-forger-" + secrets.token_hex(3),
                     username=SERVER_USER, password=SERVER_PASSWORD, timeout=30)  # fmt: skip
    try:
        for i, (victim, broadcast_id) in enumerate(zip(victims, broadcast_ids, strict=True)):
            play = Play(broadcast_id, "emergency", "http://127.0.0.1:9/x.mp3", "0" * 64, 500, now + 1)
            signer, target = (stranger, victim) if i % 2 == 0 else (real, "spk-nobody")
            payload = protocol.encode_command(
                play, signer=signer, seq=10**9 + i, command_id=uuid.uuid4().hex,
                targets=[Target.speaker(target)], issued_at=now, expires_at=now + 60,
            )  # fmt: skip
            client.publish(protocol.command_topic_for_speaker(chaos.prefix, victim), payload, qos=1)
    finally:
        client.close()
    chaos.forged += broadcast_ids
    chaos.note(f"forged/foreign commands {broadcast_ids} sent to {victims}")


# -- accounting ------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the sinks and the database say after a run."""

    broadcasts: int = 0
    deliveries: int = 0
    plays: int = 0
    finished: int = 0
    preempted: int = 0
    missed_offline: int = 0
    preempted_unheard: int = 0  # preempted before its first sample (an emergency began at its start instant)
    lost: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    foreign_plays: list[str] = field(default_factory=list)
    cache_repairs: int = 0
    emergency_start_s: list[float] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        """The non-empty problem lists."""
        keys = ("lost", "duplicates", "not_final", "mismatched", "foreign_plays")
        return {k: getattr(self, k)[:20] for k in keys if getattr(self, k)}

    def summary(self) -> str:
        """One line per count."""
        return (
            f"broadcasts={self.broadcasts} deliveries={self.deliveries} plays={self.plays} "
            f"finished={self.finished} preempted={self.preempted} (unheard {self.preempted_unheard}) "
            f"missed_offline={self.missed_offline} "
            f"lost={len(self.lost)} duplicates={len(self.duplicates)} not_final={len(self.not_final)} "
            f"mismatched={len(self.mismatched)} foreign_plays={len(self.foreign_plays)} "
            f"cache_repairs={self.cache_repairs}"
        )


def deliveries(chaos: Chaos) -> list[tuple[int, str, str, str | None, str, float]]:
    """Every delivery: (broadcast, speaker, state, reason, priority, broadcast's expiry)."""
    from sqlalchemy import select

    from broadcast.models import Broadcast, Delivery

    query = select(Delivery.broadcast_id, Delivery.speaker_id, Delivery.state, Delivery.reason, Broadcast.priority,
                   Broadcast.expires_at).join(Broadcast, Broadcast.id == Delivery.broadcast_id)  # fmt: skip
    with chaos.platform.db.transaction() as session:
        return [tuple(row) for row in session.execute(query.order_by(Delivery.broadcast_id, Delivery.speaker_id))]  # type: ignore[misc]


def all_final(chaos: Chaos) -> bool:
    """True when every delivery has ended."""
    return all(row[2] in FINAL for row in deliveries(chaos))


def tally(chaos: Chaos, online: set[str], sent_at: dict[int, float] | None = None) -> Tally:
    """Compare every delivery with what its speaker's sink recorded.

    `online`: the speakers that were online at some time before each broadcast's expiry (their agents ran);
    every other targeted speaker must end `missed` without a sound.
    """
    rows = deliveries(chaos)
    result = Tally(deliveries=len(rows), broadcasts=len({r[0] for r in rows}))
    events = {sid: timeline(chaos.sink(sid)) for sid in chaos.configs}
    known = {str(r[0]) for r in rows}
    for sid, items in events.items():
        result.cache_repairs += sum(1 for e in items if e["event"] == "cache_corrupt")
        for e in items:
            if e["event"] == "started" and str(e.get("broadcast_id")) not in known:
                result.foreign_plays.append(f"{sid} played {e.get('broadcast_id')}")
    for broadcast_id, sid, state, reason, priority, _expires in rows:
        mine = [e for e in events.get(sid, []) if str(e.get("broadcast_id")) == str(broadcast_id)]
        starts = [e for e in mine if e["event"] == "started"]
        ends = [SINK_END[e["event"]] for e in mine if e["event"] in SINK_END]
        key = f"{broadcast_id}/{sid}:{state}:{reason}"
        result.plays += len(starts)
        result.finished += state == "finished"
        result.preempted += state == "preempted"
        if len(starts) > 1:
            result.duplicates.append(f"{key} started {len(starts)}x")
        if state not in FINAL:
            result.not_final.append(key)
        if sid in online:
            if not starts and ends[-1:] == ["preempted"] == [state]:
                result.preempted_unheard += 1  # armed, then preempted at its very start: not lost
            elif not starts:
                result.lost.append(key)
            elif ends and ends[-1] != state:
                result.mismatched.append(f"{key} sink ended {ends[-1]}")
            elif not ends:
                result.mismatched.append(f"{key} sink has no end")
        else:
            if starts or state != "missed":
                result.mismatched.append(f"{key} offline speaker")
            else:
                result.missed_offline += 1
        if priority == "emergency" and starts and sent_at and broadcast_id in sent_at:
            result.emergency_start_s.append(float(starts[0]["at"]) - sent_at[broadcast_id])
    return result


# -- bursts and kills --------------------------------------------------------------------------------------


def make_clips(chaos: Chaos) -> dict[str, int]:
    """Two short spoken clips (routine and emergency), made once before the burst."""
    routine = chaos.post("/api/v1/clips", {"text": "注意"})
    emergency = chaos.post("/api/v1/clips", {"text": "撤离"})
    chaos.note(f"clips: {routine['duration_ms']} ms and {emergency['duration_ms']} ms")
    return {"routine": int(routine["id"]), "emergency": int(emergency["id"])}


@dataclass
class Burst:
    """`count` broadcasts through the API; every `emergency_every`-th one is an immediate emergency, the rest
    start one after another `spacing_s` apart; each targets `per_broadcast` of `targets` (an emergency
    `per_emergency`), and `always`."""

    count: int
    targets: list[str]
    always: list[str]
    spacing_s: float
    per_broadcast: int
    per_emergency: int = 2
    emergency_every: int = 10
    paced: bool = True  # False: send as fast as the web tier answers (start times stay spaced)
    sent_at: dict[int, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self, chaos: Chaos, clips: dict[str, int], rng: random.Random) -> None:
        """Send every broadcast (retrying while the web tier is down); record when each was asked for."""
        try:
            t0 = time.time() + 3
            for i in range(self.count):
                emergency = i % self.emergency_every == self.emergency_every - 1
                body: dict[str, Any] = {
                    "clip_id": clips["emergency" if emergency else "routine"],
                    "targets": sorted(rng.sample(self.targets, self.per_emergency if emergency else self.per_broadcast))
                    + self.always,
                }
                if emergency:
                    body["priority"] = "emergency"
                else:
                    body["priority"] = rng.choice(["normal", "normal", "urgent", "background"])
                    body["start_at"] = max(t0 + i * self.spacing_s, time.time() + 2)
                asked = time.time()
                created = chaos.post("/api/v1/broadcasts", body)
                self.sent_at[int(created["id"])] = asked
                pause = max(0.0, t0 + (i + 1) * self.spacing_s - 2.5 - time.time()) if self.paced else 0.0
                time.sleep(min(pause, self.spacing_s))  # pacing the sender, not waiting for anything to settle
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def kill_plan(rng: random.Random, span_s: float, kills: int) -> list[tuple[float, str, float]]:
    """`kills` faults at random moments within `span_s`: (at, what, downtime), what in web, worker, broker."""
    kinds = ["web", "worker", "broker"]
    plan = [(rng.uniform(2, span_s), kinds[i % 3], rng.uniform(0.5, 3.0)) for i in range(kills)]
    return sorted(plan)


def run_plan(chaos: Chaos, plan: list[tuple[float, str, float]], extra: list[tuple[float, Callable[[], None]]]) -> None:
    """Carry out the kills at their moments, each restart after its downtime; `extra` actions (attacks) run
    on threads of their own, so one that meets a killed broker cannot hold back that broker's restart."""
    begin = time.monotonic()
    attacks = [_Attack(action, at) for at, action in extra]
    for attack in attacks:
        attack.start()
    steps: list[tuple[float, Callable[[], None]]] = []
    for at, what, down in plan:
        if what == "web":
            steps += [(at, chaos.kill_web), (at + down, chaos.start_web)]
        elif what == "worker":
            steps.append((at, chaos.kill_worker))
        else:
            steps += [(at, _broker_kill(chaos)), (at + down, _broker_start(chaos))]
    for at, step in sorted(steps, key=lambda s: s[0]):
        delay = begin + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the moment of a fault, not a wait for something to settle
        step()
    for attack in attacks:
        attack.join(120)
        assert not attack.is_alive(), f"{attack.name} did not end"
        if attack.error is not None:
            raise attack.error


class _Attack(threading.Timer):
    """An attack `delay` seconds from now, beside the plan (a stdlib timer); `run_plan` raises its error."""

    def __init__(self, action: Callable[[], None], delay: float) -> None:
        super().__init__(delay, action)
        self.name, self.daemon = "chaos-attack", True
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            super().run()
        except BaseException as error:  # handed to the test's thread
            self.error = error


def _broker_kill(chaos: Chaos) -> Callable[[], None]:
    def kill() -> None:
        chaos.broker.kill()
        chaos.note("broker killed")

    return kill


def _broker_start(chaos: Chaos) -> Callable[[], None]:
    def start() -> None:
        chaos.broker.start()
        chaos.note("broker restarted")

    return start


def corrupt_cache(chaos: Chaos, speaker_id: str) -> int:
    """Flip bytes in every media file the speaker has cached; returns how many were spoiled."""
    spoiled = 0
    for path in chaos.cache_dir(speaker_id).rglob("*"):
        if path.is_file() and path.stat().st_size > 64 and not path.name.endswith((".json", ".tmp")):
            data = bytearray(path.read_bytes())
            data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)
            path.write_bytes(bytes(data))
            spoiled += 1
    chaos.note(f"{speaker_id}: {spoiled} cached file(s) corrupted")
    return spoiled


def _serve_broker(folder: str, port: str) -> None:
    """`python -m tests.e2e.faults broker FOLDER PORT`: the embedded broker alone, until SIGTERM."""
    from speakers.broker import EmbeddedBroker

    logging.basicConfig(level=logging.INFO)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    path = Path(folder)
    broker = EmbeddedBroker("127.0.0.1", int(port), password_file=path / "passwd", acl_file=path / "acl",
                            server_users=[SERVER_USER])  # fmt: skip
    broker.start()
    stop.wait()
    broker.close()


if __name__ == "__main__" and sys.argv[1:2] == ["broker"]:
    _serve_broker(*sys.argv[2:4])
