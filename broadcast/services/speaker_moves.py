"""A moved speaker follows its new grid by itself: a signed `regions` command, re-sent until the speaker follows.

The move path (`speaker_admin.update`) issues the command in the move's own transaction; `speaker_admin.sync_broker`
publishes it once the broker's ACL allows the new grid. Non-broadcast commands have no deliveries, so the outbox
does not re-send them; instead every speaker reports the grid it listens to in its state (on connecting and at each
heartbeat), and the worker sends a fresh command to any enabled speaker whose reported grid is not its grid in the
database, at most once per `FOLLOW_AGAIN_S`. That covers a command lost, a speaker offline through the move, and a
move made by a spreadsheet import.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError
from broadcast.models import Command, Region, Speaker
from broadcast.services import commands, regions
from broadcast.services.handoff import Handoff

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)

REGIONS_TTL_S = 24 * 3600  # an older one is refused as expired; the worker sends a fresh one when it reports
FOLLOW_AGAIN_S = 60.0  # the worker re-sends to a speaker still reporting its old grid at most this often
PENDING = "vb_regions_commands"  # session.info key: moves issued in this session, published by sync_broker
BATCH = 100  # sequence numbers taken per transaction (far below the speakers' anti-replay window)


def issue(session: Session, tree: dict[str, Region], speaker: Speaker, *, now: float | None = None) -> Command | None:
    """Record a `regions` command telling a provisioned, enabled speaker its new chain; None when not needed."""
    if not speaker.enabled or speaker.broker_password_hash is None or speaker.retired_at is not None:
        return None  # no broker account: a fresh configuration will carry the regions
    chain = regions.speaker_regions(tree, speaker)
    now = time.time() if now is None else now
    try:
        command = commands.issue(
            session,
            kind="regions",
            body={"regions": chain},
            targets=[f"speaker:{speaker.id}"],
            expires_at=now + REGIONS_TTL_S,
        )
    except BroadcastError as exc:  # region codes outside the protocol's chain rule: the box needs a new config
        logger.warning("speaker %s moved but cannot be told (%s): download its configuration again", speaker.id, exc)
        return None
    session.info.setdefault(PENDING, []).append(command.seq)
    return command


def send_pending(session: Session, platform: Platform) -> int:
    """Publish the `regions` commands this session issued (call after commit and after the ACL is rewritten)."""
    seqs = session.info.pop(PENDING, [])
    if not seqs:
        return 0
    with platform.db.transaction() as own:  # committed rows only; nothing held open while publishing
        found = list(own.scalars(select(Command).where(Command.seq.in_(seqs)).order_by(Command.seq)))
    try:
        messenger = platform.messenger()
    except Exception as exc:  # the worker publishes them when the broker is back
        logger.warning("broker unavailable: %d move command(s) wait for the worker: %s", len(found), exc)
        return 0
    return sum(1 for command in found if commands.send(platform.db, messenger, command))


@dataclass
class FollowState:
    """What the worker knows about speakers that have not followed a move (kept in memory)."""

    due: Handoff = field(default_factory=Handoff)  # speakers reporting a grid other than theirs
    sent: dict[str, float] = field(default_factory=dict)  # speaker -> when the worker last told it


def note_state(session: Session, speaker_id: str, fields: dict[str, Any], state: FollowState) -> None:
    """After a speaker's state is applied: mark it due when it reports listening to another grid."""
    grid = fields.get("grid")
    if not grid or not fields.get("online", True):
        return  # an agent too old to say, or its last will
    speaker = session.get(Speaker, speaker_id)
    if speaker is not None and speaker.enabled and speaker.retired_at is None and speaker.grid_code != grid:
        state.due.add(speaker_id)
    else:
        state.due.discard(speaker_id)
        state.sent.pop(speaker_id, None)


def follow(platform: Platform, state: FollowState, *, now: float | None = None) -> int:
    """Send a fresh `regions` command to each due speaker not told within FOLLOW_AGAIN_S; returns how many."""
    now = time.time() if now is None else now
    due = state.due.take()  # the receipt writer notes speakers meanwhile: they wait for the next run
    ready = sorted(s for s in due if now - state.sent.get(s, 0.0) >= FOLLOW_AGAIN_S)
    sent = 0
    for start in range(0, len(ready), BATCH):
        with platform.db.transaction() as session:
            tree = regions.load_tree(session)
            issued = []
            for speaker_id in ready[start : start + BATCH]:
                speaker = session.get(Speaker, speaker_id)
                command = issue(session, tree, speaker, now=now) if speaker is not None else None
                if command is not None:
                    issued.append(command)
            session.info.pop(PENDING, None)
        for speaker_id in ready[start : start + BATCH]:
            state.sent[speaker_id] = now
        if issued:
            messenger = platform.messenger()
            sent += sum(1 for command in issued if commands.send(platform.db, messenger, command))
    if sent:
        logger.info("told %d moved speaker(s) their regions again", sent)
    return sent
