"""Conflicts: which occurrences of a candidate schedule overlap others on the same speakers, and who plays."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)
RANK = {"emergency": 3, "urgent": 2, "normal": 1, "background": 0}
PRIORITY_ZH = {"emergency": "应急", "urgent": "紧急通知", "normal": "日常", "background": "背景"}


@dataclass(frozen=True)
class Slot:
    """One occurrence of a schedule: who plays what, where and for how long."""

    schedule_id: object
    speakers: frozenset[str]
    start: datetime
    duration_s: float
    priority: str = "normal"

    @property
    def end(self) -> datetime:
        """When it stops playing."""
        return self.start + timedelta(seconds=self.duration_s)


@dataclass(frozen=True)
class Overlap:
    """Two occurrences that would play on the same speakers at the same time, and how the ladder resolves it."""

    candidate: Slot
    other: Slot
    speakers: tuple[str, ...]
    winner: object  # the schedule id that plays
    outcome: str  # what happens to the loser: "preempted" (cut off) or "queued" (waits for the winner)

    def describe_zh(self) -> str:
        """One line for the form: "12-01 07:30 与计划 7 在 3 个终端上重叠：计划 7（紧急通知）优先，本计划排队等待"."""
        loser_is_me = self.winner != self.candidate.schedule_id
        winner = self.other if loser_is_me else self.candidate
        who = "本计划" if loser_is_me else f"计划 {self.other.schedule_id}"
        fate = "被打断" if self.outcome == "preempted" else "排队等待"
        first = "本计划" if winner is self.candidate else f"计划 {winner.schedule_id}"
        return (
            f"{self.candidate.start:%m-%d %H:%M} 与计划 {self.other.schedule_id} 在 {len(self.speakers)} 个终端上重叠："
            f"{first}（{PRIORITY_ZH.get(winner.priority, winner.priority)}）优先，{who}{fate}"
        )

    def describe_en(self) -> str:
        """The same in English."""
        fate = "is cut off" if self.outcome == "preempted" else "waits"
        return (
            f"{self.candidate.start:%m-%d %H:%M} overlaps schedule {self.other.schedule_id} on {len(self.speakers)} "
            f"speakers: schedule {self.winner} plays, the other {fate}"
        )


def resolve(a: Slot, b: Slot) -> tuple[Slot, str]:
    """The slot that plays and what happens to the other: a higher priority interrupts a lower one already
    playing (preempted) or makes it wait; at equal priority the earlier start plays and the later waits
    (`b`, the existing one, wins a tie)."""
    ra, rb = RANK.get(a.priority, 1), RANK.get(b.priority, 1)
    if ra != rb:
        winner, loser = (a, b) if ra > rb else (b, a)
        return winner, "preempted" if loser.start < winner.start else "queued"
    return (a, "queued") if a.start < b.start else (b, "queued")


def conflicts(
    candidate: Iterable[Slot], others: Iterable[Slot], horizon: tuple[datetime, datetime] | None = None
) -> list[Overlap]:
    """Every overlap of the candidate's occurrences with other schedules' occurrences on shared speakers.

    `horizon` (start, end) limits which candidate occurrences are looked at. Others are sorted once and
    searched by start time, so a county's thousands of occurrences are checked in well under a second.
    """
    pool = sorted((o for o in others), key=lambda s: s.start)
    starts = [o.start for o in pool]
    longest = max((o.duration_s for o in pool), default=0.0)
    found: list[Overlap] = []
    for slot in sorted(candidate, key=lambda s: s.start):
        if horizon is not None and not horizon[0] <= slot.start < horizon[1]:
            continue
        lo = bisect.bisect_left(starts, slot.start - timedelta(seconds=longest))
        hi = bisect.bisect_left(starts, slot.end)
        for other in pool[lo:hi]:
            if other.schedule_id == slot.schedule_id or other.end <= slot.start:
                continue
            shared = slot.speakers & other.speakers
            if not shared:
                continue
            winner, outcome = resolve(slot, other)
            found.append(Overlap(slot, other, tuple(sorted(shared)), winner.schedule_id, outcome))
    return found
