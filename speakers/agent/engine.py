"""Runs the device rules against real time: arms outputs, times starts and ends, reports (media: fetching.py).

Every play is handed to its output `arm_lead` before its start instant, and the output begins it at that
instant by the device clock, so all speakers of a grid start together however busy this process is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from speakers.agent.fetching import MediaIntake
from speakers.agent.outputs.base import Playback
from speakers.agent.policy import Action, PlayItem
from speakers.agent.timers import TimerHandle
from speakers.errors import SpeakerError

if TYPE_CHECKING:
    from speakers.agent.core import Agent
    from speakers.agent.workqueue import WorkQueue

logger = logging.getLogger(__name__)


@dataclass
class Active:
    """The play on the output now (or armed to begin shortly)."""

    item: PlayItem
    playback: Playback
    volume: int
    began_reported: bool = False
    timers: list[TimerHandle] = field(default_factory=list)
    preempts: tuple[Active, float] | None = None  # (previous play, local instant) to end when this begins


class PlaybackEngine(MediaIntake):
    """Executes the planner's decisions for one agent."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.active: Active | None = None
        self.following: Active | None = None  # armed to begin the instant the active play ends (see _follow)
        self._wake: TimerHandle | None = None
        self._fetching: set[str] = set()
        self._backoff: dict[str, float] = {}  # sha256 -> delay before its next fetch attempt
        self._pending_preempt: tuple[Active, float] | None = None
        self.closed = False  # after close(): late callbacks (downloads, timers) change nothing

    # -- planning ------------------------------------------------------------------------------------

    def replan(self, *, persist: bool = True) -> None:
        """Ask the planner what to do now and do it; arm the timer for the next decision.

        The state is saved once if anything was done, unless `persist` is false (the caller saves it).
        """
        if self.closed:
            return
        if self._catch_up():
            return  # _finish planned again and saved
        agent = self.agent
        horizon = agent.config.arm_lead_ms / 1000
        now = agent.clock.server_now()
        acted = False
        # Two commands for one broadcast (a superseded command and its successor, both queued) must not both
        # play: a queued play whose broadcast has started meanwhile is dropped when it would be due.
        for item in [i for i in agent.planner.pending.values() if i.broadcast_id in agent.done]:
            agent.planner.remove(item.play_id)
            agent.report("refused", item, reason="already_played")
            acted = True
        for action in agent.planner.tick(now, horizon, self.ready):
            self._execute(action)
            # a follower armed is saved as still queued: the saved state changes only if that failed
            acted = acted or action.kind != "follow" or self.following is None
        if acted and persist:
            agent.persist()
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        wake = agent.planner.next_wake(now, horizon)
        if wake is not None:
            delay = max(0.0, agent.clock.to_local(wake) - time.time())
            self._wake = agent.timers.call_later(delay, self.replan)

    def _catch_up(self) -> bool:
        """If the output has moved on to the play armed to follow while this process's timers run late, end the
        play it followed now (it becomes the play in progress). True if it did."""
        follower, active = self.following, self.active
        if follower and active and follower.playback.began_at <= time.time():
            self._finish(active)
            return True
        return False

    def _execute(self, action: Action) -> None:
        if action.kind == "missed":
            self.agent.report("missed", action.item, reason="expired")
        elif action.kind == "refused":
            self.agent.report("refused", action.item, reason="quiet_hours")
        elif action.kind == "start":
            self._start(action.item, action.at)
        elif action.kind == "follow":
            self._follow(action.item)
        elif action.kind == "unarm":
            self._disarm()  # the planner put it back in the queue already, and may have armed another in its place
        elif action.kind == "preempt" and self.active is not None:
            # ended when the new play begins, see _begin
            self._pending_preempt = (self.active, self.agent.clock.to_local(action.at))
            self.active = None

    def volume_for(self, item: PlayItem) -> int:
        """Emergency plays at the maximum; anything else at its own or the device volume, capped."""
        cap = self.agent.config.max_volume
        if item.priority == "emergency":
            return cap
        return min(item.volume if item.volume is not None else self.agent.volume, cap)

    def _start(self, item: PlayItem, at: float) -> None:
        agent = self.agent
        preempts, self._pending_preempt = self._pending_preempt, None
        pcm = agent.pcm.peek(item.sha256)
        if pcm is None:  # evicted between planning and now: cannot happen often, report honestly
            self._start_failed(item, preempts, "decode_failed", "decoded audio no longer at hand")
            return
        volume = self.volume_for(item)
        try:
            playback = agent.output.play(
                pcm,
                start_at=agent.clock.to_local(at),
                volume=volume,
                repeat=item.repeat,
                gap_s=item.repeat_gap_ms / 1000,
                label=item.command_id,
            )
        except SpeakerError as exc:
            self._start_failed(item, preempts, "output_error", exc.en)
            return
        agent.mark_done(item.broadcast_id, item.expires_at)
        active = Active(item, playback, volume, preempts=preempts)
        self.active = active
        agent.planner.ends(self._server_time(playback.began_at + playback.duration_s))
        active.timers.append(agent.timers.call_at(playback.began_at, self._begun, active))

    def _follow(self, item: PlayItem) -> None:
        """Hand `item` to the output now, to begin the instant the active play ends: no gap between the two.

        A real output holds it (silence until then); the timers that would start it after the end are not on
        the path, so ten thousand simulated speakers whose tones end together all begin their speech on time.
        """
        agent = self.agent
        current = self.active
        pcm = agent.pcm.peek(item.sha256)
        if current is None or pcm is None:
            agent.planner.after = None
            agent.report("failed", item, reason="decode_failed", detail={"error": "decoded audio no longer at hand"})
            return
        end = current.playback.began_at + current.playback.duration_s
        volume = self.volume_for(item)
        try:
            playback = agent.output.play(
                pcm,
                start_at=max(end, agent.clock.to_local(item.start_at)),
                volume=volume,
                repeat=item.repeat,
                gap_s=item.repeat_gap_ms / 1000,
                label=item.command_id,
            )
        except SpeakerError as exc:
            agent.planner.after = None
            agent.report("failed", item, reason="output_error", detail={"error": exc.en})
            return
        follower = Active(item, playback, volume)
        self.following = follower
        follower.timers.append(agent.timers.call_at(playback.began_at, self._begun, follower))

    def unarm(self) -> None:
        """Put the play armed to follow back in the queue (what it followed ended early or is cut off)."""
        self.agent.planner.release_after()
        self._disarm()

    def _disarm(self) -> None:
        """Take the play armed to follow off the output; the queue is the planner's business."""
        follower, self.following = self.following, None
        if follower is None:
            return
        for timer in follower.timers:
            timer.cancel()
        follower.playback.end(time.time(), completed=False)  # never began: nothing to report

    def _promote(self) -> None:
        """The play armed to follow is now the one in progress (the planner moved it along already)."""
        follower, self.following = self.following, None
        if follower is None:
            return
        self.active = follower
        self.agent.mark_done(follower.item.broadcast_id, follower.item.expires_at)
        self.agent.planner.ends(self._server_time(follower.playback.began_at + follower.playback.duration_s))

    def _server_time(self, local: float) -> float:
        return local + self.agent.clock.server_now() - time.time()

    def _begun(self, active: Active) -> None:
        """The start instant has come. In a simulated fleet its report waits behind what speakers received.

        The output began on time either way and `started` carries that instant; ten thousand simulated speakers
        starting together must not hold back the commands still arriving for the others (see WorkQueue).
        """
        if active is self.following and self.active is not None:
            self._finish(self.active)  # the end of the play it follows comes first, whatever the timers' order
        queue = self.agent.work_queue
        if queue is None or active.preempts is not None:  # what it cuts off ends at this instant, not later
            self._begin(active)
        else:
            queue.submit(self._begin, active, later=True)

    def _start_failed(self, item: PlayItem, preempts: tuple[Active, float] | None, reason: str, error: str) -> None:
        self.agent.planner.finished()
        self._cut_off(preempts, "preempted", time.time(), by=item.broadcast_id)
        self.agent.report("failed", item, reason=reason, detail={"error": error})

    def _begin(self, active: Active) -> None:
        preempts, active.preempts = active.preempts, None
        self._cut_off(preempts, "preempted", by=active.item.broadcast_id)
        if active.playback.ended:
            return
        end = active.playback.began_at + active.playback.duration_s
        active.timers.append(self.agent.timers.call_at(end, self._finish, active))
        active.began_reported = True
        detail: dict[str, Any] = {"priority": active.item.priority, "volume": active.volume}
        if active.playback.file:
            detail["file"] = active.playback.file
        late = active.playback.began_at - self.agent.clock.to_local(active.item.start_at)
        if late > 0.001:
            detail["late_ms"] = round(late * 1000, 1)
        self.agent.report("started", active.item, at=active.playback.began_at, detail=detail)

    def _cut_off(self, preempts: tuple[Active, float] | None, event: str, at: float | None = None, **why: str) -> None:
        """End the play `preempts` names, at its instant (or `at`). If it had not begun by then, the play it was
        itself to cut off is still the one on the output: that one ends at the same instant, and so on."""
        while preempts is not None:
            previous, instant = preempts
            at = instant if at is None else at
            preempts = None
            if previous.playback.began_at > at:
                preempts, previous.preempts = previous.preempts, None
            self._end(previous, event, at, **why)

    def _finish(self, active: Active) -> None:
        """The play ran to its end: report it and start what waits. In a fleet the report queues behind.

        Ten thousand simulated speakers whose tone ends at the same instant each start their queued speech
        before any of them reports the tone finished, as each real speaker would on its own processor.
        """
        if active.playback.ended:
            return
        end = active.playback.began_at + active.playback.duration_s
        self._end(active, "finished", end, queue=self.agent.work_queue)
        if self.active is active:
            self.active = None
            self.agent.planner.finished()
            self._promote()
        self.replan(persist=False)
        self.agent.persist()

    def _end(
        self,
        active: Active,
        event: str,
        at: float,
        *,
        by: str | None = None,
        reason: str | None = None,
        queue: WorkQueue | None = None,
    ) -> None:
        """Report how a play ended (`started` first if still unreported); with `queue`, the report waits in it."""
        if not active.began_reported and not active.playback.ended and active.playback.began_at <= at:
            self._begin(active)  # it began, and its report still waits in a fleet's queue: `started` comes first
        for timer in active.timers:
            timer.cancel()
        if active.playback.ended:
            return
        played = active.playback.end(at, completed=event == "finished")
        detail: dict[str, Any] = {"played_ms": round(played * 1000)}
        if active.playback.file and active.began_reported:
            detail["file"] = active.playback.file
        if by:
            detail["by"] = by
        at = max(at, active.playback.began_at)
        report = partial(self.agent.report, event, active.item, at=at, reason=reason, detail=detail)
        if queue is not None:
            queue.submit(report, later=True)
        else:
            report()

    def stop(self, broadcast_id: str | None) -> int:
        """End the matching play now and drop matching queued plays; return how many were affected.

        The caller persists the state afterwards.
        """
        agent = self.agent
        count = 0
        for item in list(agent.planner.pending.values()):
            if broadcast_id in (None, item.broadcast_id):
                agent.planner.remove(item.play_id)
                agent.mark_done(item.broadcast_id, item.expires_at)
                agent.report("stopped", item, reason="cancelled")
                count += 1
        self._catch_up()  # after dropping those: the plan it may make cannot arm one of them
        following = self.following
        if following is not None and broadcast_id in (None, following.item.broadcast_id):
            self.following = None
            agent.planner.after = None
            agent.mark_done(following.item.broadcast_id, following.item.expires_at)
            self._end(following, "stopped", time.time(), reason="stop_command")
            count += 1
        active = self.active
        if active is not None and broadcast_id in (None, active.item.broadcast_id):
            self.unarm()  # what followed it starts now instead
            now = time.time()
            preempts = self._withdraw(active, now)
            self._end(active, "stopped", now, reason="stop_command")
            self.active = None
            agent.planner.finished()
            count += 1
            if preempts is not None and broadcast_id is None:
                self._cut_off(preempts, "stopped", now, reason="stop_command")
            elif preempts is not None and not preempts[0].playback.ended:
                self._resume(preempts[0])
        self.replan(persist=False)
        return count

    def _withdraw(self, active: Active, now: float) -> tuple[Active, float] | None:
        """What `active` was to cut off, if it has not begun by `now`: taken from it, since it cuts nothing off now.

        Begun (its timers late), it keeps it: ending `active` reports `started` and that preemption first."""
        if active.playback.began_at <= now:
            return None
        preempts, active.preempts = active.preempts, None
        return preempts

    def _resume(self, active: Active) -> None:
        """A play whose preemption was called off before the preempting play began plays on (or, if it has not
        begun either, begins as planned)."""
        self.active = active
        end = active.playback.began_at + active.playback.duration_s
        self.agent.planner.resume(active.item, self._server_time(end))

    def halt(self) -> None:
        """The agent is stopping: the play in progress (and one it was about to cut off) failed; the armed one
        goes back to the queue, saved with it (nothing new is planned: whatever else is due waits for the restart)."""
        self.unarm()
        active, self.active = self.active, None
        if active is None:
            return
        now = time.time()
        preempts = self._withdraw(active, now)
        self._end(active, "failed", now, reason="agent_stopped")
        self._cut_off(preempts, "failed", now, reason="agent_stopped")
        self.agent.planner.finished()

    def close(self) -> None:
        """Cancel timers (the agent is shutting down; a play in progress is cut off)."""
        self.closed = True
        if self._wake is not None:
            self._wake.cancel()
        for active in (self.active, self.following):
            if active is not None:
                for timer in active.timers:
                    timer.cancel()
