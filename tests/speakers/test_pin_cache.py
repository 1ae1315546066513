"""Pin: the real agent keeps media of a play scheduled for tomorrow while cache pressure evicts everything else."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from speakers.protocol import Play, Target
from tests.conftest import wait_for

from .conftest import GRID, AgentRunner, Clip, ServerSide

HERE = [Target.region(GRID)]
DAY = 86400.0


def play(clip: Clip, media: Any, bid: str, start_in: float) -> Play:
    """A routine play of `clip`."""
    start = time.time() + start_in
    return Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=start, expires_at=start + 60)  # fmt: skip


def test_tomorrows_media_survives_cache_pressure(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    tomorrow, alarm, long = clips["short"], clips["alarm"], clips["long"]
    size = {c.name: c.path.stat().st_size for c in clips.values()}
    # Room for tomorrow's clip and the longest one only: the second play now must evict something.
    agent = make_agent(cache_cap_bytes=size[tomorrow.name] + size[long.name])
    server.online(agent.id)
    cache = agent.config.cache_dir
    server.send(play(tomorrow, media, "tomorrow", DAY), HERE, expires_in=2 * DAY)
    server.receipt(agent.id, "acknowledged", broadcast_id="tomorrow")
    wait_for(lambda: (cache / tomorrow.sha256).exists(), "tomorrow's media fetched ahead of time")

    for bid, clip in (("now-1", alarm), ("now-2", long)):
        server.send(play(clip, media, bid, 0.4), HERE)
        server.receipt(agent.id, "finished", broadcast_id=bid)
    assert not (cache / alarm.sha256).exists(), "the cap was reached: the least recently used clip was evicted"
    assert (cache / long.sha256).exists()
    assert (cache / tomorrow.sha256).exists(), "still scheduled: never evicted"
    assert (cache / tomorrow.sha256).read_bytes() == tomorrow.path.read_bytes()
    assert [name for name, _range in media.requests].count(tomorrow.name) == 1, "fetched once, ahead of time"
    assert not server.receipts.matching(lambda r: r.broadcast_id == "tomorrow" and r.event != "acknowledged")
