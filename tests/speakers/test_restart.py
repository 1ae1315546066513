"""A real `speaker-agent run` process killed mid-play and started again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from speakers.config import AgentConfig
from speakers.protocol import Play, Target

from .conftest import GRID, REGIONS, Clip, ServerSide, read_timeline


def spawn(config_path: Path, sink: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "speakers.cli", "run", "--config", str(config_path), "--sink", str(sink)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def test_agent_killed_mid_play_reports_it_and_resumes_its_queue(
    server: ServerSide, topic_prefix: str, tmp_path: Path, clips: dict[str, Clip], media: Any
) -> None:
    speaker = f"proc-{topic_prefix}"
    config = AgentConfig(
        speaker_id=speaker, broker_url=server.url, username=None, password=None, topic_prefix=topic_prefix,
        regions=REGIONS, server_keys=[server.key.public_b64()], state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache", clean_session=True, reconnect_max_s=1.0,
    )  # fmt: skip
    config_path = tmp_path / "agent.json"
    config_path.write_text(config.to_json())
    sink = tmp_path / "sink"
    process = spawn(config_path, sink, tmp_path / "agent.log")
    try:
        server.online(speaker, timeout=20)
        long, tiny = clips["long"], clips["tiny"]
        start = time.time() + 2.0  # both clips fetched and decoded before it, even on a busy machine
        for bid, clip in (("long-notice", long), ("queued-notice", tiny)):
            server.send(
                Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                     duration_ms=clip.duration_ms, start_at=start, expires_at=start + 60),
                [Target.region(GRID)],
            )  # fmt: skip
        server.receipt(speaker, "started", broadcast_id="long-notice")
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed_at = time.time()
        server.states.wait(lambda s: s.speaker_id == speaker and not s.online and s.will)
        process = spawn(config_path, sink, tmp_path / "agent.log")
        failed = server.receipt(speaker, "failed", broadcast_id="long-notice", timeout=20)
        assert failed.reason == "interrupted"
        queued = server.receipt(speaker, "finished", broadcast_id="queued-notice", timeout=20)
        assert queued.at > killed_at, "the queued play survived the restart and played after it"
        time.sleep(0.5)
        timeline = read_timeline(sink)
        assert [e["broadcast_id"] for e in timeline if e["event"] == "started"] == ["long-notice", "queued-notice"]
        assert not server.receipts.matching(lambda r: r.event == "finished" and r.broadcast_id == "long-notice")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    assert process.returncode == 0, (tmp_path / "agent.log").read_text()[-2000:]
