"""Chaos benchmark (issue 7): a long randomized run of broadcasts through real processes while the web tier, the
worker holding the lease and the broker are killed with SIGKILL at random moments, then the counts that must be
zero: lost plays (speakers online before expiry), duplicate plays, deliveries not final or not matching the
sinks, plays of forged or foreign commands. Also emergency time-to-start (request to the sink's start) under a
burst sent as fast as the web tier answers.

The deployment is the fault-injection suite's (tests/e2e/faults.py): a broker process (embedded amqtt, or
Mosquitto with the generated files), waitress, two `broadcast worker`s, four `speaker-agent run` with file sinks
and one provisioned speaker that never connects. Run from the repository root:

    .venv/bin/python benchmarks/chaos_bench.py --count 1000 --kills 30 [--broker mosquitto] [--seed N]
    .venv/bin/python benchmarks/chaos_bench.py --count 200 --burst --kills 0      # emergency time-to-start
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.faults import (
    Burst,
    all_final,
    attack,
    forge,
    kill_plan,
    make_clips,
    prepare,
    run_plan,
    tally,
)
from tests.e2e.procs import wait_for

AGENTS = ["spk-42122410420101-1", "spk-42122410420101-2", "spk-42122410420102-1", "spk-42122410420302-2"]
ABSENT = "spk-42122410420201-1"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    """Run one chaos round and print its counts; exit 1 when a count that must be zero is not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["embedded", "mosquitto"], default="embedded")
    parser.add_argument("--count", type=int, default=1000, help="broadcasts in the run")
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs of web, worker and broker, in turn")
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between routine start times")
    parser.add_argument("--ttl", type=int, default=30, help="COMMAND_TTL_S: how late a routine play may start")
    parser.add_argument("--burst", action="store_true", help="send as fast as the web tier answers")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: SQLite in the temp folder)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="vb-chaos-bench-"))
    database = args.database or f"sqlite:///{tmp / 'chaos.db'}"
    print(f"seed={seed} broker={args.broker} database={database.split(':')[0]} count={args.count} "
          f"kills={args.kills} burst={args.burst} folder={tmp}")  # fmt: skip
    chaos = prepare(tmp, args.broker, [*AGENTS, ABSENT], database_url=database, COMMAND_TTL_S=str(args.ttl))
    try:
        chaos.broker.start()
        chaos.start_web()
        chaos.start_worker()
        chaos.start_worker()
        for speaker_id in AGENTS:
            chaos.start_agent(speaker_id)
        for speaker_id in AGENTS:
            wait_for(lambda s=speaker_id: chaos.online(s), 60, f"{speaker_id} online")
        clips = make_clips(chaos)
        burst = Burst(args.count, AGENTS, [ABSENT], args.spacing, per_broadcast=1, per_emergency=2,
                      paced=not args.burst)  # fmt: skip
        span = args.count * args.spacing
        plan = kill_plan(rng, span * 0.9, args.kills)
        extra = [(rng.uniform(1, span), lambda: attack(chaos, AGENTS[0], AGENTS[1])) for _ in range(3)]
        forged = [f"99{n:04d}" for n in range(4)]
        extra.append((rng.uniform(1, span), lambda: forge(chaos, AGENTS, forged)))
        began = time.monotonic()
        sender = threading.Thread(target=burst.run, args=(chaos, clips, rng), name="burst")
        sender.start()
        run_plan(chaos, plan, extra)
        burst.done.wait(span + 600)
        if burst.error is not None:
            raise burst.error
        if chaos.web is None or not chaos.web.alive():
            chaos.start_web()
        wait_for(lambda: all_final(chaos), args.ttl + span + 300, "every delivery to end", interval=1.0)
        result = tally(chaos, set(AGENTS), burst.sent_at)
        sent = sorted(burst.sent_at.values())
        print(f"elapsed={time.monotonic() - began:.0f}s kills={len(plan)} sent in {sent[-1] - sent[0]:.1f}s")
        print(result.summary())
        starts = result.emergency_start_s
        if starts:
            p50, p95 = statistics.median(starts), _percentile(starts, 0.95)
            print(f"emergency time-to-start (request -> sink start, {len(starts)} plays): "
                  f"p50={p50:.2f}s p95={p95:.2f}s max={max(starts):.2f}s")  # fmt: skip
        for problem, items in result.problems().items():
            print(f"{problem}: {items}")
        return 1 if result.problems() else 0
    finally:
        print("\n".join(chaos.log[-12:]))
        chaos.stop()
        if args.broker == "mosquitto":  # its files live outside the run's folder (Mosquitto must read them)
            shutil.rmtree(chaos.broker.folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
