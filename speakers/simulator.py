"""Fleet simulator: many virtual speakers in one process, each a full `Agent` (own connection, own keys
and anti-replay state, real signature checks, real receipts); media files and decoded audio are shared."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speakers.agent import trust
from speakers.agent.audio import SHARED_PCM
from speakers.agent.cache import MediaCache
from speakers.agent.core import Agent
from speakers.agent.outputs import create_output
from speakers.agent.store import FileStore, MemoryStore, Store
from speakers.agent.timers import Timers
from speakers.agent.workqueue import WorkQueue
from speakers.config import AgentConfig
from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)


# A generated fleet hands a play to its output up to a second before the start (a real speaker: 250 ms). The
# output still begins at the start instant, so what is heard and reported is the same; but a play that starts
# within the second (an alert's tone, 0.7 s after its command) is armed when it is accepted, not by a second
# planning pass at start - 250 ms: one pass fewer per speaker on the CPUs ten thousand devices share here.
SIMULATED_ARM_LEAD_MS = 1000


def generated_fleet(
    count: int,
    *,
    broker_url: str,
    server_keys: list[str],
    prefix: str,
    regions: list[str],
    grids: int = 1,
    id_prefix: str = "sim",
    username: str | None = None,
    password: str | None = None,
    work_dir: Path,
    quiet_hours: list[str] | None = None,
) -> list[AgentConfig]:
    """N speakers under the region chain `regions` (outermost first), spread over `grids` grids.

    Grid g's code is the innermost region's code followed by g as three digits.
    """
    if count < 1 or not regions:
        raise SpeakerError("speakers.bad_fleet", "模拟终端数量或区域不合法。", "A fleet needs count >= 1 and a region.")
    configs = []
    for i in range(count):
        speaker_id = f"{id_prefix}-{i:05d}"
        grid = f"{regions[-1]}{i % grids:03d}"
        configs.append(
            AgentConfig(
                speaker_id=speaker_id,
                broker_url=broker_url,
                username=username,
                password=password,
                topic_prefix=prefix,
                regions=[grid, *reversed(regions)],
                server_keys=server_keys,
                state_dir=work_dir / "state" / speaker_id,
                cache_dir=work_dir / "cache",
                quiet_hours=quiet_hours or [],
                clean_session=True,  # a load test leaves no sessions behind in the broker
                arm_lead_ms=SIMULATED_ARM_LEAD_MS,
            )
        )
    return configs


def load_fleet(path: Path) -> list[AgentConfig]:
    """Read FLEET.json: a JSON list of AgentConfig objects."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise SpeakerError("speakers.bad_fleet", "终端清单应为 JSON 数组。", "FLEET.json must be a JSON list.")
    return [AgentConfig.from_dict(item) for item in data]


def rss_bytes() -> int:
    """Resident memory of this process now."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class FleetOptions:
    """How the simulator runs its speakers."""

    output: str = "null"  # "null" or "sink"
    sink_root: Path | None = None  # each speaker's sink is sink_root/<speaker_id>/
    cache_dir: Path | None = None  # shared media cache (default: the first speaker's cache_dir)
    cache_cap_bytes: int = 1024 * 1024 * 1024
    persistent: bool = True  # False: no state files (load tests of thousands of speakers)
    connect_rate: float = 500.0  # new connections per second, so a big fleet does not flood the broker
    status_every_s: float = 5.0  # print a status line this often (0 = never)
    time_sync_spacing_s: float = 1.0  # seconds between a speaker's first clock samples
    chunk: int = 100  # commands handled per event-loop iteration (see WorkQueue)
    # PUBACKs ride along with the next packet, or leave after this: long enough that an imminent play's
    # `started` (the tone: 0.7 s after its command) carries them, instead of thousands of bare writes
    puback_delay_s: float = 2.0
    shared_verify: bool = False  # share signature checks of byte-identical commands (trust.share_verifications)


class Fleet:
    """The running virtual speakers."""

    def __init__(self, configs: list[AgentConfig], options: FleetOptions) -> None:
        if options.output == "sink" and options.sink_root is None:
            raise SpeakerError(
                "speakers.no_sink_root", "文件输出需要 --sink-root。", "The sink output needs --sink-root."
            )
        self.configs = configs
        self.options = options
        cache_dir = options.cache_dir or configs[0].cache_dir
        self.cache = MediaCache(cache_dir, options.cache_cap_bytes)
        self.agents: list[Agent] = []
        self.cache.pinned = self._pinned  # the shared cache keeps what any of the speakers needs
        self.work = WorkQueue(options.chunk)
        self.timers = Timers()
        trust.share_verifications(options.shared_verify)

    def _agent(self, config: AgentConfig) -> Agent:
        options = self.options
        if options.output == "sink":
            output = create_output("sink", sink_dir=options.sink_root / config.speaker_id)  # type: ignore[operator]
        else:
            output = create_output(options.output)
        store: Store = FileStore(config.state_dir) if options.persistent else MemoryStore()
        return Agent(
            config, output=output, store=store, cache=self.cache, pcm=SHARED_PCM,
            time_sync_spacing_s=options.time_sync_spacing_s,
            work_queue=None if options.persistent else self.work,
            puback_delay_s=0.0 if options.persistent else options.puback_delay_s,
            timers=self.timers,
        )  # fmt: skip

    async def start(self) -> None:
        """Create and connect every speaker at the configured rate."""
        started = time.monotonic()
        for i, config in enumerate(self.configs):
            agent = self._agent(config)
            agent.start()
            self.agents.append(agent)
            due = started + (i + 1) / self.options.connect_rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        # Thousands of long-lived agents make every full garbage collection scan millions of objects, a
        # pause of a few hundred milliseconds in the middle of a burst: move them out of the collector's
        # sight once they exist, and collect the young generation less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 1000)

    def _pinned(self) -> set[str]:
        pinned: set[str] = set()
        for agent in self.agents:
            pinned |= agent.pinned_media()
        return pinned

    def status(self) -> dict[str, object]:
        """A summary for the status line."""
        connected = synced = fully = 0
        for agent in self.agents:
            connected += agent.client is not None and agent.client.connected
            samples = len(agent.clock.samples)
            synced += samples > 0
            fully += samples >= agent._sync_samples
        return {
            "speakers": len(self.configs),
            "started": len(self.agents),
            "connected": connected,
            "synced": synced,
            "fully_synced": fully,
            "rss_bytes": rss_bytes(),
            "at": round(time.time(), 3),
        }

    async def stop(self) -> None:
        """Stop every speaker cleanly."""
        await asyncio.gather(*(agent.stop() for agent in self.agents), return_exceptions=True)


async def run_fleet(configs: list[AgentConfig], options: FleetOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set; print a JSON status line every `status_every_s`."""
    fleet = Fleet(configs, options)
    logger.info("starting %d simulated speakers", len(configs))
    starter = asyncio.create_task(fleet.start())
    try:
        while not stop.is_set():
            if options.status_every_s:
                print(json.dumps({"status": fleet.status()}), flush=True)  # the CLI's output
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), options.status_every_s or 3600)
    finally:
        starter.cancel()
        await asyncio.gather(starter, return_exceptions=True)
        await fleet.stop()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(on_orphaned: Any = None, *, poll_s: float = 1.0) -> bool:
    """Make this process end when its parent dies (even by SIGKILL): no simulator outlives `broadcast run`.

    Linux: the kernel sends SIGTERM at the parent's death (prctl PR_SET_PDEATHSIG), which the CLI turns
    into a clean stop. As a fallback (other systems, or a parent thread that exits first) a daemon thread
    watches getppid() and calls `on_orphaned` (default: SIGTERM to itself). Returns False when there is no
    parent to follow (started by init).
    """
    parent = os.getppid()
    if parent == 1:
        return False
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    action = on_orphaned or (lambda: os.kill(os.getpid(), signal.SIGTERM))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)  # a bounded, cheap poll: nothing to wait on for another process's death
        logger.warning("parent process %d is gone: stopping", parent)
        action()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before the prctl took effect
        action()
    return True


def run_processes(argv: list[str], processes: int) -> int:
    """Run `simulate` as `processes` children (each a slice of the fleet); print summed status lines."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "speakers.cli", *argv, "--slice", f"{k}/{processes}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(processes)
    ]
    latest: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def read(k: int, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if not line.startswith("{"):
                continue
            with lock:
                latest[k] = json.loads(line)["status"]
                if len(latest) == processes:
                    total = {
                        key: sum(s[key] for s in latest.values())
                        for key in ("speakers", "started", "connected", "synced", "fully_synced", "rss_bytes")
                    }
                    total["at"] = round(time.time(), 3)
                    total["processes"] = processes
                    print(json.dumps({"status": total}), flush=True)  # the CLI's output

    readers = [threading.Thread(target=read, args=(k, c), daemon=True) for k, c in enumerate(children)]
    for reader in readers:
        reader.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    codes = [child.wait() for child in children]
    for reader in readers:
        reader.join(5)
    return max(codes)
