"""The `speaker-agent` command: help, errors, and the fleet simulator as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from speakers.agent import trust
from speakers.config import AgentConfig
from speakers.protocol import Play, Target
from speakers.signing import KeyPair
from speakers.simulator import Fleet, FleetOptions, generated_fleet
from tests.requires import need

from .conftest import COUNTY, TOWNSHIP, VILLAGE, Clip, ServerSide, read_timeline

AGENT = [sys.executable, "-m", "speakers.cli"]


def test_help_and_usage_errors(tmp_path: Path) -> None:
    shown = subprocess.run([*AGENT, "--help"], capture_output=True, text=True, check=True)
    assert "run" in shown.stdout
    assert "simulate" in shown.stdout
    sim_help = subprocess.run([*AGENT, "simulate", "--help"], capture_output=True, text=True, check=True)
    assert "--fleet" in sim_help.stdout
    assert "--sink-root" in sim_help.stdout
    missing = subprocess.run([*AGENT, "run", "--config", str(tmp_path / "none.json")], capture_output=True, text=True)
    assert missing.returncode != 0
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    refused = subprocess.run([*AGENT, "run", "--config", str(bad)], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "JSON" in refused.stderr


def _fleet(server: ServerSide, tmp_path: Path, prefix: str) -> list[AgentConfig]:
    configs = []
    for name, grid in (("east", f"{VILLAGE}01"), ("west", f"{VILLAGE}02"), ("other", "42122420010101")):
        regions = (
            [grid, VILLAGE, TOWNSHIP, COUNTY] if name != "other" else [grid, "421224200101", "421224200000", COUNTY]
        )
        configs.append(AgentConfig(
            speaker_id=f"{name}-{prefix}", broker_url=server.url, username=None, password=None, topic_prefix=prefix,
            regions=regions, server_keys=[server.key.public_b64()], state_dir=tmp_path / name / "state",
            cache_dir=tmp_path / name / "cache", clean_session=True,
        ))  # fmt: skip
    return configs


def test_simulate_a_fleet_file_with_sinks(
    server: ServerSide, topic_prefix: str, tmp_path: Path, clips: dict[str, Clip], media: Any
) -> None:
    configs = _fleet(server, tmp_path, topic_prefix)
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps([c.to_dict() for c in configs]))
    sinks = tmp_path / "sinks"
    process = subprocess.Popen(
        [*AGENT, "simulate", "--fleet", str(fleet), "--sink-root", str(sinks), "--status-every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        for config in configs:
            server.online(config.speaker_id, timeout=20)
        clip = clips["tiny"]
        server.send(
            Play(broadcast_id="township-notice", priority="normal", media_url=media.url(clip.name),
                 sha256=clip.sha256, duration_ms=clip.duration_ms, start_at=time.time() + 0.5),
            [Target.region(TOWNSHIP)],
        )  # fmt: skip
        for config in configs[:2]:
            server.receipt(config.speaker_id, "finished", broadcast_id="township-notice")
        time.sleep(0.5)
        played = {c.speaker_id: [e["event"] for e in read_timeline(sinks / c.speaker_id)] for c in configs}
        assert played[configs[0].speaker_id][-2:] == ["started", "finished"]
        assert played[configs[1].speaker_id][-2:] == ["started", "finished"]
        assert "started" not in played[configs[2].speaker_id], "another township hears nothing"
        assert list((sinks / configs[0].speaker_id).glob("*.wav"))
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    status = [json.loads(line)["status"] for line in out.splitlines() if line.startswith("{")]
    assert status
    assert max(s["connected"] for s in status) == 3
    assert all((tmp_path / c.speaker_id.split("-")[0] / "state" / "state.json").exists() for c in configs)


@pytest.mark.parametrize("sharing", [[], ["--shared-verify"]], ids=["own-checks", "shared-checks"])
def test_simulate_count_generates_a_fleet(
    server: ServerSide, topic_prefix: str, clips: dict[str, Clip], media: Any, sharing: list[str]
) -> None:
    count = 40
    process = subprocess.Popen(
        [*AGENT, "simulate", "--count", str(count), "--broker-url", server.url, "--server-key", server.key.public_b64(),
         "--prefix", topic_prefix, "--region", COUNTY, "--region", TOWNSHIP, "--grids", "4",
         "--id-prefix", f"sim{topic_prefix}", "--ephemeral", "--status-every", "0", *sharing],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        server.states.wait(
            lambda s: s.online and s.speaker_id.startswith(f"sim{topic_prefix}"), count=count, timeout=30
        )
        clip = clips["short"]
        start_at = time.time() + 3.0
        command = Play(broadcast_id="all", priority="urgent", media_url=media.url(clip.name), sha256=clip.sha256,
                       duration_ms=clip.duration_ms, start_at=start_at)  # fmt: skip
        server.send(command, [Target.region(TOWNSHIP)])
        started = server.receipts.wait(lambda r: r.event == "started", count=count, timeout=20)
        # Each started at the command's start as its own clock reckoned it (server time = speaker time + its
        # offset), not on receipt (3 s early) nor on some later event: give or take how far a clock sample taken
        # between arming and starting moves that reckoning. That is up to a round trip, and round trips on a box
        # with both cores busy reach a tenth of a second (0.11 s seen, either way), so the bound is 0.3 s. How
        # closely the clocks agree is the fan-out benchmark's figure, not this test's.
        server_time = [r.at + r.offset_ms / 1000 for r in started]
        assert max(abs(t - start_at) for t in server_time) < 0.3, "started at the command's start"
        assert {r.speaker_id for r in started} == {f"sim{topic_prefix}-{i:05d}" for i in range(count)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert process.returncode == 0


def test_the_fleet_shares_signature_checks_only_when_asked(tmp_path: Path) -> None:
    configs = generated_fleet(2, broker_url="mqtt://127.0.0.1:1", server_keys=[KeyPair.generate().public_b64()],
                              prefix="p", regions=["1"], work_dir=tmp_path)  # fmt: skip
    try:
        Fleet(configs, FleetOptions(persistent=False))
        assert trust._VERIFIED is None
        Fleet(configs, FleetOptions(persistent=False, shared_verify=True))
        assert trust._VERIFIED == {}
    finally:
        trust.share_verifications(False)


PARENT = """
import subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
print(child.pid, flush=True)
for line in child.stdout:
    print(line, end="", flush=True)
"""


def _gone(pid: int) -> bool:
    """True when the process has exited (a zombie nobody reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


def test_simulator_dies_with_its_parent(server: ServerSide, topic_prefix: str) -> None:
    need(Path("/proc").is_dir(), "needs /proc (Linux)")
    sim = [*AGENT, "simulate", "--count", "2", "--broker-url", server.url, "--server-key", server.key.public_b64(),
           "--prefix", topic_prefix, "--region", COUNTY, "--id-prefix", f"orphan{topic_prefix}", "--ephemeral",
           "--status-every", "0.2"]  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", PARENT, *sim], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().startswith('{"status"'), "the simulator runs"
        server.states.wait(lambda s: s.online and s.speaker_id.startswith(f"orphan{topic_prefix}"), count=2)
        assert not _gone(child)
        parent.kill()  # SIGKILL: no chance to clean up, as with kill -9 of `broadcast run`
        parent.wait(10)
        deadline = time.monotonic() + 20
        while not _gone(child):
            assert time.monotonic() < deadline, "the simulator outlived its parent"
            time.sleep(0.05)
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
        parent.stdout.close()


def test_the_simulator_runs_on_uvloop_and_one_speaker_on_asyncios_loop() -> None:
    import uvloop

    from speakers.cli import _loop_factory

    assert _loop_factory("simulate") is uvloop.new_event_loop  # installed with the project
    assert _loop_factory("run") is None  # microsecond timers for the one device
