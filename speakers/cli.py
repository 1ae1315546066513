"""`speaker-agent`: run one speaker, or simulate a fleet.

speaker-agent run --config FILE [--sink DIR] [--output soundcard|sink|null]
speaker-agent simulate --fleet FLEET.json [--sink-root DIR]
speaker-agent simulate --count N --broker-url URL --server-key KEY --region CODE [...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from speakers import __version__
from speakers.agent.core import Agent
from speakers.agent.outputs import create_output
from speakers.config import AgentConfig
from speakers.errors import SpeakerError
from speakers.protocol import DEFAULT_PREFIX
from speakers.simulator import FleetOptions, die_with_parent, generated_fleet, load_fleet, run_fleet, run_processes

logger = logging.getLogger("speakers.cli")

ENV_CONFIG = "SPEAKER_AGENT_CONFIG"  # default for --config on a device
ENV_PROFILE = "SPEAKER_AGENT_PROFILE_DIR"  # simulate: SIGUSR1/SIGUSR2 profile a stretch of the run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speaker-agent",
        description="村村响 speaker agent: verifies signed commands, plays them on time, reports receipts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one speaker (the device)")
    run.add_argument(
        "--config", type=Path, default=os.environ.get(ENV_CONFIG), help=f"AgentConfig JSON (or ${ENV_CONFIG})"
    )
    run.add_argument(
        "--sink", type=Path, help="write played audio as WAV + timeline.jsonl into DIR (implies --output sink)"
    )
    run.add_argument("--output", choices=["soundcard", "sink", "null"], help="audio output (default soundcard)")
    run.add_argument("--backend", action="append", help="miniaudio backend for the sound card, e.g. alsa (repeatable)")

    sim = sub.add_parser("simulate", help="run many virtual speakers in this process (load tests, demos)")
    sim.add_argument("--fleet", type=Path, help="FLEET.json: a JSON list of AgentConfig objects")
    sim.add_argument("--sink-root", type=Path, help="give each speaker a file sink at DIR/<speaker_id>/")
    sim.add_argument("--count", type=int, help="generate N speakers instead of --fleet")
    sim.add_argument("--broker-url", help="with --count: the broker")
    sim.add_argument("--server-key", action="append", default=[], help="with --count: trusted key (repeatable)")
    sim.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"with --count: topic prefix (default {DEFAULT_PREFIX})")
    sim.add_argument("--region", action="append", default=[], help="with --count: region chain, outermost first")
    sim.add_argument("--grids", type=int, default=1, help="with --count: spread speakers over this many grids")
    sim.add_argument("--id-prefix", default="sim", help="with --count: speaker ids are PREFIX-00000 ...")
    sim.add_argument("--username", help="with --count: broker user name shared by the fleet")
    sim.add_argument("--password", help="with --count: broker password shared by the fleet")
    sim.add_argument("--work-dir", type=Path, help="with --count: state and cache folder (default: temporary)")
    sim.add_argument("--cache-dir", type=Path, help="shared media cache (default: the first speaker's cache_dir)")
    sim.add_argument("--ephemeral", action="store_true", help="keep agent state in memory only (load tests)")
    sim.add_argument("--connect-rate", type=float, default=500.0, help="connections per second (default 500)")
    sim.add_argument("--status-every", type=float, default=5.0, help="seconds between JSON status lines")
    sim.add_argument("--output", choices=["null", "sink"], help="default: sink with --sink-root, else null")
    sim.add_argument("--processes", type=int, default=1, help="split the fleet over this many processes")
    sim.add_argument("--time-sync-spacing", type=float, default=1.0, help="seconds between a speaker's clock samples")
    sim.add_argument(
        "--shared-verify",
        action="store_true",
        help="share the signature check of byte-identical commands among the simulated speakers (load tests)",
    )
    sim.add_argument("--slice", help=argparse.SUPPRESS)  # K/N: run every N-th speaker from K (set by --processes)
    return parser


def _install_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def _install_profiler(loop: asyncio.AbstractEventLoop) -> None:
    """With $SPEAKER_AGENT_PROFILE_DIR set: SIGUSR1 starts cProfile, SIGUSR2 writes profile-<pid>.prof."""
    folder = os.environ.get(ENV_PROFILE)
    if not folder:
        return
    import cProfile  # only for this diagnostic

    profiler = cProfile.Profile()

    def begin() -> None:
        profiler.enable()

    def end() -> None:
        profiler.disable()
        profiler.dump_stats(str(Path(folder) / f"profile-{os.getpid()}.prof"))

    loop.add_signal_handler(signal.SIGUSR1, begin)
    loop.add_signal_handler(signal.SIGUSR2, end)


async def _run(args: argparse.Namespace) -> None:
    if args.config is None:
        raise SpeakerError(
            "speakers.no_config", "请用 --config 指定终端配置。", f"Give --config FILE (or ${ENV_CONFIG})."
        )
    config = AgentConfig.load(args.config)
    name = "sink" if args.sink else (args.output or "soundcard")
    if name == "sink" and args.sink is None:
        raise SpeakerError("speakers.no_sink", "文件输出需要 --sink 目录。", "The sink output needs --sink DIR.")
    output = create_output(name, sink_dir=args.sink, backends=args.backend)
    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop)
    agent = Agent(config, output=output)
    agent.start()
    logger.info("speaker %s running (output %s, broker %s)", config.speaker_id, name, config.broker_url)
    await stop.wait()
    await agent.stop()
    output.close()


async def _simulate(args: argparse.Namespace) -> None:
    temp: tempfile.TemporaryDirectory[str] | None = None
    if args.fleet:
        configs = load_fleet(args.fleet)
    elif args.count:
        if not (args.broker_url and args.server_key and args.region):
            raise SpeakerError(
                "speakers.bad_fleet",
                "--count 需要 --broker-url、--server-key 和 --region。",
                "--count needs --broker-url, --server-key and --region.",
            )
        work_dir = args.work_dir
        if work_dir is None:
            temp = tempfile.TemporaryDirectory(prefix="speaker-sim-")
            work_dir = Path(temp.name)
        configs = generated_fleet(
            args.count, broker_url=args.broker_url, server_keys=args.server_key, prefix=args.prefix,
            regions=args.region, grids=args.grids, id_prefix=args.id_prefix, username=args.username,
            password=args.password, work_dir=work_dir,
        )  # fmt: skip
    else:
        raise SpeakerError("speakers.bad_fleet", "请给出 --fleet 或 --count。", "Give --fleet FILE or --count N.")
    if args.slice:
        k, n = (int(x) for x in args.slice.split("/"))
        configs = configs[k::n]
    options = FleetOptions(
        output=args.output or ("sink" if args.sink_root else "null"),
        sink_root=args.sink_root,
        cache_dir=args.cache_dir,
        persistent=not args.ephemeral and not (args.count and args.work_dir is None),
        connect_rate=args.connect_rate,
        status_every_s=args.status_every,
        time_sync_spacing_s=args.time_sync_spacing,
        shared_verify=args.shared_verify,
    )
    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop)
    _install_profiler(asyncio.get_running_loop())
    try:
        await run_fleet(configs, options, stop)
    finally:
        if temp is not None:
            temp.cleanup()


def _loop_factory(command: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop for the fleet simulator where it is installed (its sockets cost less CPU); else asyncio's.

    One speaker (`run`) keeps asyncio's loop: its timers have microsecond resolution, uvloop's milliseconds.
    """
    if command != "simulate":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `speaker-agent` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "simulate":
            die_with_parent()  # a simulator never outlives whoever started it (e.g. `broadcast run`)
        if args.command == "simulate" and args.processes > 1 and not args.slice:
            return run_processes(sys.argv[1:] if argv is None else argv, args.processes)
        with asyncio.Runner(loop_factory=_loop_factory(args.command)) as runner:
            runner.run(_run(args) if args.command == "run" else _simulate(args))
    except SpeakerError as exc:
        print(f"speaker-agent: {exc.zh} / {exc.en}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
