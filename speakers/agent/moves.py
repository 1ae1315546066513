"""A moved speaker follows its new grid: the signed `regions` command, its subscriptions and the broker's ACL.

The command comes only on the speaker's own topic (one publish must never move a whole grid) and only a newer
sequence than the last move is taken. The new chain is persisted (see `persist.py`); the old region topics are
unsubscribed and the new ones subscribed. When the command outruns the broker's ACL (the embedded broker re-reads
it within seconds, Mosquitto on SIGHUP) a refused subscription is asked for again at 1, 2, 4 ... s, then at every
heartbeat.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from speakers import protocol
from speakers.messages import Regions

if TYPE_CHECKING:
    from speakers.agent.core import Agent
    from speakers.protocol import SignedCommand

logger = logging.getLogger(__name__)


def region_topics(prefix: str, codes: list[str]) -> set[str]:
    """The command topics of a region chain."""
    return {protocol.command_topic_for_region(prefix, code) for code in codes}


class RegionFollower:
    """The `regions` command of one agent and the subscriptions that follow it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def handle(self, signed: SignedCommand, command: Regions, *, own_topic: bool) -> None:
        """A verified move: listen to the new grid and its ancestors from now on, and say so."""
        agent = self.agent
        if not own_topic or signed.targets != (f"speaker:{agent.config.speaker_id}",):
            agent.report("refused", command_id=signed.id, seq=signed.seq, reason="not_own_topic")
            return
        if signed.seq <= agent.regions_seq:
            agent.report("refused", command_id=signed.id, seq=signed.seq, reason="stale_regions")
            return
        agent.regions_seq = signed.seq
        self.move_to(list(command.regions))
        detail = {"grid": command.regions[0], "regions": list(command.regions)}
        agent.report("acknowledged", command_id=signed.id, seq=signed.seq, detail=detail)
        agent.publish_state()  # the server sees the new grid at once, not a heartbeat later

    def move_to(self, codes: list[str]) -> None:
        """Take a new region chain: commands for the old regions are refused, those for the new ones accepted."""
        agent = self.agent
        prefix = agent.config.topic_prefix
        old = region_topics(prefix, agent.config.regions)
        agent.config = agent.config.with_regions(codes)
        new = region_topics(prefix, agent.config.regions)
        agent.verifier.addresses = {f"speaker:{agent.config.speaker_id}", *(f"region:{c}" for c in codes)}
        agent.command_topics = {agent.own_topic, *new}
        if agent.client is not None:
            agent.client.unsubscribe(sorted(old - new))
            agent.client.subscribe([(t, 1) for t in sorted(new - old)])
            self._follow_acl(1.0)
        logger.warning("%s: moved to grid %s (%s)", agent.config.speaker_id, codes[0], ", ".join(codes))

    def subscribe_refused(self) -> bool:
        """Ask again for command topics the broker refused; True when some were."""
        client = self.agent.client
        refused = client.refused & self.agent.command_topics if client is not None and client.connected else set()
        if refused and client is not None:
            client.subscribe([(t, 1) for t in sorted(refused)])
        return bool(refused)

    def _follow_acl(self, delay_s: float) -> None:
        timers = self.agent._timers

        def retry() -> None:
            timers.pop("follow_acl", None)
            if self.subscribe_refused() and delay_s * 2 < self.agent.config.heartbeat_s:
                self._follow_acl(delay_s * 2)  # beyond that the heartbeat keeps asking

        previous = timers.pop("follow_acl", None)
        if previous is not None:
            previous.cancel()
        timers["follow_acl"] = self.agent.timers.call_later(delay_s, retry)
