"""The agent's persisted state document: what it holds and how it is restored."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from speakers.agent.dedup import SeenCommands
from speakers.agent.policy import PlayItem
from speakers.agent.replay import ReplayWindow
from speakers.agent.trust import KeyRing, public_key
from speakers.errors import SpeakerError

if TYPE_CHECKING:
    from speakers.agent.core import Agent

logger = logging.getLogger(__name__)

FORMAT = 1


def snapshot(agent: Agent) -> dict[str, Any]:
    """Everything that must survive a restart."""
    active = agent.engine.active
    return {
        "format": FORMAT,
        "speaker_id": agent.config.speaker_id,
        "keys": agent.keys.to_list(),
        "replay": agent.window.to_dict(),
        "seen": agent.seen.to_dict(),
        "volume": agent.volume,
        # a play armed to follow the active one has not begun: it is restored to the queue
        "pending": [item.to_dict() for item in (*agent.planner.pending.values(), *filter(None, [agent.planner.after]))],
        "current": {"item": active.item.to_dict(), "began_at": active.playback.began_at} if active else None,
        "done": agent.done,
        "outbox": list(agent.outbox.values()),
        "rejected_count": agent.rejected_count,
        "cache_repairs": agent.cache_repairs,
        "schedule": {"seq": agent.schedule_seq, "snapshot_id": agent.schedule_id},
        "keep": agent.kept.to_list(),
        # a move: the followed chain, and the configuration's chain it overrides (a new configuration wins)
        "regions": {"seq": agent.regions_seq, "codes": agent.config.regions, "config": agent.provisioned_regions},
    }


def restore(agent: Agent, data: dict[str, Any] | None) -> None:
    """Load a saved document into a fresh agent (before it connects)."""
    if not data:
        return
    if data.get("speaker_id") not in (None, agent.config.speaker_id):
        logger.error(
            "state folder belongs to %s, not %s: starting fresh", data.get("speaker_id"), agent.config.speaker_id
        )
        return
    stored = KeyRing.from_list(data.get("keys", []))
    provisioned = public_key(agent.config.server_keys[0]).key_id
    if stored.keys and stored.find(provisioned):
        agent.keys = stored
    elif stored.keys:
        # the device was re-provisioned with a key it never learned by rotation: the operator decides
        logger.warning("provisioned server key %s is new: trusting the configuration's keys", provisioned)
    agent.window = ReplayWindow.from_dict(data.get("replay", {}))
    agent.seen = SeenCommands.from_dict(data.get("seen", {}))
    agent.volume = min(int(data.get("volume", agent.volume)), agent.config.max_volume)
    for raw in data.get("pending", []):
        agent.planner.add(PlayItem.from_dict(raw))
    agent.interrupted = data.get("current")
    if agent.interrupted:
        item = PlayItem.from_dict(agent.interrupted["item"])
        agent.mark_done(item.broadcast_id, item.expires_at)
    agent.done.update({str(k): float(v) for k, v in data.get("done", {}).items()})
    for receipt in data.get("outbox", []):
        agent._outbox_next += 1
        agent.outbox[agent._outbox_next] = receipt
    agent.rejected_count = int(data.get("rejected_count", 0))
    agent.cache_repairs = int(data.get("cache_repairs", 0))
    schedule = data.get("schedule") or {}
    agent.schedule_seq = int(schedule.get("seq", 0))
    agent.schedule_id = schedule.get("snapshot_id")
    agent.kept.load(data.get("keep") or [])
    _restore_regions(agent, data.get("regions") or {})


def _restore_regions(agent: Agent, moved: dict[str, Any]) -> None:
    """The regions a move command set, unless the configuration file was replaced since (then it wins)."""
    agent.regions_seq = int(moved.get("seq", 0))
    codes = moved.get("codes")
    if not codes or moved.get("config") != agent.provisioned_regions or codes == agent.config.regions:
        return
    try:
        agent.config = agent.config.with_regions(list(codes))
    except SpeakerError as exc:
        logger.error("saved regions ignored: %s", exc.en)
