"""A held acknowledgement rides in the next receipt about the same command (one receipt where there were two)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from speakers.protocol import Play, Target

from .conftest import GRID, AgentRunner, Clip, ServerSide


def _play(clip: Clip, media: Any, bid: str, start_in: float) -> Play:
    return Play(broadcast_id=bid, priority="emergency", media_url=media.url(clip.name), sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=time.time() + start_in)  # fmt: skip


def test_a_region_plays_held_acknowledgement_rides_in_its_started_receipt(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent()
    server.online(agent.id)
    # Region-wide and imminent: the acknowledgement is held until the start, then folded into `started`.
    region_cmd = server.send(_play(clips["alarm"], media, "fold", start_in=0.6), [Target.region(GRID)])
    started = server.receipt(agent.id, "started", broadcast_id="fold")
    acknowledged_at = started.detail["acknowledged_at"]
    assert started.command_id == region_cmd
    assert acknowledged_at <= started.at, "acknowledged before it started, on the speaker's clock"
    assert started.at - acknowledged_at < 2.0
    server.receipt(agent.id, "finished", broadcast_id="fold")
    sent = server.receipts.matching(lambda r: r.command_id == region_cmd)
    assert [r.event for r in sent].count("acknowledged") == 0, [r.event for r in sent]
    # Addressed to the speaker itself: acknowledged at once, in a receipt of its own, as before.
    own_cmd = server.send(_play(clips["alarm"], media, "own", start_in=0.6), [Target.speaker(agent.id)])
    server.receipt(agent.id, "finished", broadcast_id="own")
    own = server.receipts.matching(lambda r: r.command_id == own_cmd)
    assert next(r.event for r in own) == "acknowledged", [r.event for r in own]
    assert "acknowledged_at" not in next(r for r in own if r.event == "started").detail
