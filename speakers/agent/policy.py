"""Device playback rules, as pure logic over a clock the caller passes in (no I/O, no timers).

- A higher priority preempts what plays, at its start time; the interrupted play is reported preempted.
- Equal or lower priority waits in the queue (priority first, then start time, then sequence); once the end of
  the play in progress is within the horizon, the next is armed to follow it without a gap (an alert's speech
  begins the instant its tone ends, however busy the device is then).
- A play whose start window (expires_at) passes before it could start is missed: nothing stale is played.
- In quiet hours only emergency plays; anything else due then is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from speakers.config import in_quiet_hours
from speakers.messages import Play, priority_rank


@dataclass
class PlayItem:
    """One play the device has accepted (from a play command or a schedule snapshot item)."""

    play_id: str  # unique per play: the command id, or "schedule:<item id>"
    command_id: str  # reported in receipts: the command id, or the schedule item id
    broadcast_id: str
    priority: str
    media_url: str
    sha256: str
    duration_ms: int
    start_at: float  # server clock
    expires_at: float  # server clock: latest start
    volume: int | None
    repeat: int
    repeat_gap_ms: int
    seq: int
    source: str  # "command" | "schedule"
    title: str | None = None

    @property
    def rank(self) -> int:
        """Larger = more urgent."""
        return priority_rank(self.priority)

    @classmethod
    def from_play(
        cls, play: Play, *, play_id: str, command_id: str, seq: int, default_expiry: float, source: str
    ) -> PlayItem:
        """Build from a verified Play."""
        return cls(
            play_id=play_id,
            command_id=command_id,
            broadcast_id=play.broadcast_id,
            priority=play.priority,
            media_url=play.media_url,
            sha256=play.sha256,
            duration_ms=play.duration_ms,
            start_at=play.start_at,
            expires_at=play.expires_at if play.expires_at is not None else default_expiry,
            volume=play.volume,
            repeat=play.repeat,
            repeat_gap_ms=play.repeat_gap_ms,
            seq=seq,
            source=source,
            title=play.title,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the state file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlayItem:
        """Restore from the state file."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Action:
    """What the agent must do: kind is missed | refused | unarm | preempt | start | follow; at is server clock.

    `follow` arms a play to begin when the one in progress ends; `unarm` puts such a play back in the queue.
    """

    kind: str
    item: PlayItem
    at: float


class Planner:
    """The queue and the one play in progress."""

    def __init__(self, quiet_spans: list[tuple[int, int]], utc_offset_minutes: int) -> None:
        self.quiet_spans = quiet_spans
        self.utc_offset_minutes = utc_offset_minutes
        self.pending: dict[str, PlayItem] = {}
        self.current: PlayItem | None = None
        self.current_end: float | None = None  # server clock, once the caller knows it (see `ends`)
        self.after: PlayItem | None = None  # armed to follow the current play

    def add(self, item: PlayItem) -> None:
        """Queue an accepted play."""
        self.pending[item.play_id] = item

    def remove(self, play_id: str) -> PlayItem | None:
        """Take a queued play out (cancelled)."""
        return self.pending.pop(play_id, None)

    def finished(self) -> PlayItem | None:
        """The play in progress ended; return it. The play armed to follow it becomes the one in progress."""
        item, self.current, self.after = self.current, self.after, None
        self.current_end = None
        return item

    def resume(self, item: PlayItem, end: float) -> None:
        """`item`, about to be cut off by a play stopped before it began, is the play in progress again."""
        self.current, self.current_end = item, end

    def ends(self, at: float) -> None:
        """The play in progress ends at `at` (server clock): the next may be armed to follow it."""
        self.current_end = at

    def release_after(self) -> PlayItem | None:
        """The play armed to follow goes back to the queue; return it."""
        item, self.after = self.after, None
        if item is not None:
            self.pending[item.play_id] = item
        return item

    def quiet(self, at: float) -> bool:
        """True when `at` (server clock) is in quiet hours."""
        return bool(self.quiet_spans) and in_quiet_hours(self.quiet_spans, at, self.utc_offset_minutes)

    def tick(self, now: float, horizon: float, ready: Callable[[PlayItem], bool]) -> list[Action]:
        """Decide what happens up to `now + horizon`; `ready` says whether an item's media is at hand."""
        actions: list[Action] = []
        for item in list(self.pending.values()):
            if item.expires_at < now:
                del self.pending[item.play_id]
                actions.append(Action("missed", item, now))
        while True:
            due = [i for i in self.pending.values() if i.start_at <= now + horizon and ready(i)]
            if not due:
                return actions
            best = max(due, key=lambda i: (i.rank, -i.start_at, -i.seq))
            at = max(best.start_at, now)
            follows = self.current is not None and best.rank <= self.current.rank
            if follows and self._can_follow(best, now + horizon):
                at = max(best.start_at, self.current_end)  # type: ignore[type-var]
            elif follows and (best.priority == "emergency" or not self.quiet(at)):
                return actions  # waits for the play in progress
            if best.priority != "emergency" and self.quiet(at):
                del self.pending[best.play_id]
                actions.append(Action("refused", best, at))
                continue
            if self.after is not None:  # outranked by `best`: back to the queue
                actions.append(Action("unarm", self.after, at))
                self.release_after()
            del self.pending[best.play_id]
            if follows:
                self.after = best
                actions.append(Action("follow", best, at))
                return actions
            if self.current is not None:
                actions.append(Action("preempt", self.current, at))
            self.current, self.current_end = best, None
            actions.append(Action("start", best, at))
            return actions

    def _can_follow(self, item: PlayItem, until: float) -> bool:
        """True when `item` may be armed now to follow the current play (its end is near and known)."""
        if self.current_end is None or self.current_end > until or item.expires_at < self.current_end:
            return False  # end unknown or not near yet; or it would begin too late: it is missed in the queue
        return self.after is None or item.rank > self.after.rank

    def next_wake(self, now: float, horizon: float) -> float | None:
        """The next server-clock instant when `tick` may decide something new."""
        times = []
        if self.current_end is not None and self.after is None and self.pending and self.current_end - horizon > now:
            times.append(self.current_end - horizon)
        for item in self.pending.values():
            times.append(item.expires_at + 0.001)
            if item.start_at - horizon > now:
                times.append(item.start_at - horizon)
        return min(times) if times else None
