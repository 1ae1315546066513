"""Pin: the playback engine (fetch and decode before a play is due, start on time, preempt, stop, retry).

The engine runs here against a hand-driven agent: the real planner, a scripted cache, decoder and output,
timers and a device clock that move only when a test says so (no broker, no event loop, no audio). The
device clock runs 100 s behind the server's, so every conversion between the two clocks shows.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import random
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.agent import engine as engine_module
from speakers.agent import fetching as fetching_module
from speakers.agent.engine import PlaybackEngine
from speakers.agent.fetching import FETCH_RETRY_MAX_S
from speakers.agent.outputs.base import Playback
from speakers.agent.policy import Planner, PlayItem
from speakers.agent.timers import TimerHandle
from speakers.errors import SpeakerError
from speakers.messages import Play

OFFSET = 100.0  # server clock minus device clock
T0 = 1_800_000_000.0  # device clock at the start of each test
LEAD = 0.25  # arm_lead_ms / 1000


class Future:
    """The part of asyncio.Future the engine uses, resolved by hand."""

    def __init__(self) -> None:
        self.state = "pending"
        self.error: BaseException | None = None
        self.callbacks: list[Callable[[Future], None]] = []

    def add_done_callback(self, fn: Callable[[Future], None]) -> None:
        if self.state == "pending":
            self.callbacks.append(fn)
        else:
            fn(self)

    def _settle(self, state: str, error: BaseException | None = None) -> None:
        self.state, self.error = state, error
        for fn in self.callbacks:
            fn(self)

    def ok(self) -> None:
        self._settle("done")

    def fail(self, error: BaseException) -> None:
        self._settle("done", error)

    def cancel(self) -> None:
        self._settle("cancelled")

    def cancelled(self) -> bool:
        return self.state == "cancelled"

    def exception(self) -> BaseException | None:
        assert self.state == "done", "asyncio raises CancelledError here"
        return self.error


class Device:
    """The device clock and the agent's timers."""

    def __init__(self) -> None:
        self.now = T0
        self.timers: list[TimerHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, fn, args)
        self.timers.append(handle)
        return handle

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.call_at(self.now + delay, fn, *args)

    def armed(self) -> list[tuple[float, str]]:
        """(instant, callback name) of the timers still to run, in order."""
        live = sorted((h for h in self.timers if not h.cancelled()), key=lambda h: h.when)
        return [(h.when, h.fn.__name__) for h in live]  # type: ignore[union-attr]

    def run_until(self, until: float) -> None:
        """Run every timer due by `until`, in order, moving the clock along."""
        while True:
            due = [h for h in self.timers if not h.cancelled() and h.when <= until]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.now = max(self.now, handle.when)
            fn, args = handle.fn, handle.args
            handle.cancel()
            fn(*args)  # type: ignore[misc]
        self.now = max(self.now, until)


class Clock:
    def __init__(self, device: Device) -> None:
        self.device = device

    def server_now(self) -> float:
        return self.device.now + OFFSET

    def to_local(self, server_time: float) -> float:
        return server_time - OFFSET


class Cache:
    """Which media are cached, and one scripted download per fetch."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.fetches: list[tuple[str, str, Future]] = []
        self.touched: list[str] = []
        self.discarded: list[str] = []
        self.store_error: Exception | None = None

    def has(self, sha256: str) -> bool:
        return sha256 in self.files

    def path_for(self, sha256: str) -> Path:
        return Path("/cache") / sha256

    def verify(self, sha256: str) -> Path:
        return self.path_for(sha256)

    def fetch_future(self, url: str, sha256: str) -> Future:
        future = Future()
        self.fetches.append((url, sha256, future))
        return future

    def touch(self, sha256: str) -> None:
        self.touched.append(sha256)

    def discard(self, sha256: str) -> None:
        self.files.discard(sha256)
        self.discarded.append(sha256)

    def store_bytes(self, sha256: str, data: bytes) -> Path:
        if self.store_error is not None:
            raise self.store_error
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SpeakerError("speakers.hash_mismatch", "不符", "does not match")
        self.files.add(sha256)
        return self.path_for(sha256)


class Decoder:
    """Decoded audio at hand, and one scripted decode per request."""

    def __init__(self) -> None:
        self.items: dict[str, object] = {}
        self.decodes: list[tuple[str, Path, Any, Future]] = []

    def peek(self, sha256: str) -> object | None:
        return self.items.get(sha256)

    def decode_future(self, sha256: str, path: Path, check: Any = None) -> Future:
        future = Future()
        self.decodes.append((sha256, path, check, future))
        return future


class Ending(Playback):
    """A playback that remembers whether the engine ended it as completed (a file sink keeps it all then)."""

    completed: bool | None = None

    def end(self, at: float, *, completed: bool) -> float:
        self.completed = completed
        return super().end(at, completed=completed)


class Output:
    """Plays begin `latency` seconds after the instant asked for (or now, if that has passed, as every real output
    does); `error` makes the next play fail."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.records = False
        self.recorded: list[dict[str, Any]] = []
        self.plays: list[dict[str, Any]] = []
        self.latency = 0.0
        self.duration = 2.0
        self.file: str | None = None
        self.error: SpeakerError | None = None

    def play(self, pcm: object, *, start_at: float, volume: int, repeat: int, gap_s: float, label: str) -> Playback:
        if self.error is not None:
            raise self.error
        self.plays.append({"pcm": pcm, "start_at": start_at, "volume": volume, "repeat": repeat, "gap_s": gap_s,
                           "label": label})  # fmt: skip
        playback = Ending(max(start_at, self.device.now) + self.latency, self.duration)
        playback.file = self.file
        return playback

    def record(self, event: dict[str, Any]) -> None:
        self.recorded.append(event)


class Agent:
    """The agent as the engine sees it."""

    def __init__(self, device: Device, quiet: list[tuple[int, int]] | None = None) -> None:
        self.config = types.SimpleNamespace(arm_lead_ms=LEAD * 1000, max_volume=80, speaker_id="spk-1")
        self.planner = Planner(quiet or [], 0)
        self.clock = Clock(device)
        self.timers = device
        self.work_queue = None  # a real speaker: no fleet queue
        self.cache = Cache()
        self.pcm = Decoder()
        self.output = Output(device)
        self.done: dict[str, float] = {}
        self.cache_repairs = 0
        self.volume = 60
        self.receipts: list[dict[str, Any]] = []
        self.persisted = 0
        self.published = 0

    def report(self, event: str, item: PlayItem, *, at: float | None = None, reason: str | None = None,
               detail: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.receipts.append({"event": event, "broadcast_id": item.broadcast_id, "at": at, "reason": reason,
                              "detail": detail})  # fmt: skip

    def mark_done(self, broadcast_id: str, expires_at: float) -> None:
        self.done[broadcast_id] = expires_at

    def persist(self) -> None:
        self.persisted += 1

    def publish_state(self) -> None:
        self.published += 1

    def events(self) -> list[tuple[str, str, str | None]]:
        """(event, broadcast, reason) of every receipt so far."""
        return [(r["event"], r["broadcast_id"], r["reason"]) for r in self.receipts]


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Device:
    """The device clock, also what the engine reads as time.time()."""
    clock = Device()
    monkeypatch.setattr(engine_module, "time", clock)
    monkeypatch.setattr(fetching_module, "time", clock)
    return clock


@pytest.fixture
def agent(device: Device) -> Agent:
    return Agent(device)


@pytest.fixture
def engine(agent: Agent) -> PlaybackEngine:
    return PlaybackEngine(agent)  # type: ignore[arg-type]


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def item(bid: str, start_in: float = 10.0, *, priority: str = "normal", media: str | None = None, seq: int = 1,
         expires_in: float = 60.0, volume: int | None = None, repeat: int = 1) -> PlayItem:  # fmt: skip
    """A play of broadcast `bid` due `start_in` seconds from now (server clock)."""
    start = T0 + OFFSET + start_in
    return PlayItem(play_id=f"p-{bid}", command_id=f"c-{bid}", broadcast_id=bid, priority=priority,
                    media_url=f"http://media/{media or bid}", sha256=sha(media or bid), duration_ms=2000,
                    start_at=start, expires_at=start + expires_in, volume=volume, repeat=repeat,
                    repeat_gap_ms=1500, seq=seq, source="command")  # fmt: skip


def at_hand(agent: Agent, *items: PlayItem) -> None:
    """Media of `items` cached and decoded."""
    for i in items:
        agent.cache.files.add(i.sha256)
        agent.pcm.items[i.sha256] = f"pcm-{i.broadcast_id}"


# --- intake, fetch and decode ------------------------------------------------------------------------------


def test_an_accepted_play_is_queued_and_its_media_fetched_without_saving(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1")
    engine.accept(play)
    assert agent.planner.pending == {"p-b1": play}
    assert [(url, h) for url, h, _ in agent.cache.fetches] == [("http://media/b1", sha("b1"))]
    assert agent.persisted == 0, "the command handler saves once"
    due = item("b2", start_in=0)
    at_hand(agent, due)
    engine.accept(due)
    assert [p["label"] for p in agent.output.plays] == ["c-b2"]
    assert agent.persisted == 0, "not even when it starts at once"


def test_media_fetched_is_decoded_and_then_plays_on_time(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    play = item("b1", start_in=10)
    engine.accept(play)
    assert not engine.ready(play)
    agent.cache.files.add(play.sha256)
    agent.cache.fetches[0][2].ok()
    (h, path, check, decoded) = agent.pcm.decodes[0]
    assert (h, path, check) == (play.sha256, Path("/cache") / play.sha256, agent.cache.verify)
    assert not engine.ready(play), "cached but not decoded yet"
    agent.pcm.items[play.sha256] = "pcm"
    decoded.ok()
    assert engine.ready(play)
    assert agent.cache.touched == [play.sha256]
    assert device.armed() == [(T0 + 10 - LEAD, "replan")], "woken when the play comes within the lead"
    device.run_until(T0 + 10 - LEAD)
    assert agent.output.plays == [{"pcm": "pcm", "start_at": T0 + 10, "volume": 60, "repeat": 1, "gap_s": 1.5,
                                   "label": "c-b1"}]  # fmt: skip
    assert engine.active is not None
    assert agent.planner.current == play
    assert agent.done == {"b1": play.expires_at}
    device.run_until(T0 + 10)
    assert agent.events() == [("started", "b1", None)]
    assert agent.receipts[0]["at"] == T0 + 10
    assert agent.receipts[0]["detail"] == {"priority": "normal", "volume": 60}
    device.run_until(T0 + 12)
    assert agent.events() == [("started", "b1", None), ("finished", "b1", None)]
    assert agent.receipts[1]["at"] == T0 + 12
    assert agent.receipts[1]["detail"] == {"played_ms": 2000}
    assert engine.active is None
    assert agent.planner.current is None
    assert agent.persisted >= 1


def test_ready_needs_both_the_cached_file_and_the_decoded_audio(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1")
    agent.pcm.items[play.sha256] = "pcm"
    assert not engine.ready(play)
    agent.cache.files.add(play.sha256)
    assert engine.ready(play)
    del agent.pcm.items[play.sha256]
    assert not engine.ready(play)


def test_media_at_hand_or_under_way_is_not_fetched_again(agent: Agent, engine: PlaybackEngine) -> None:
    first, again = item("b1", media="m"), item("b2", media="m")
    engine.prefetch(first)
    engine.prefetch(again)
    assert len(agent.cache.fetches) == 1
    ready = item("b3")
    at_hand(agent, ready)
    engine.prefetch(ready)
    assert len(agent.cache.fetches) == 1
    assert agent.pcm.decodes == []


def test_cached_media_not_yet_decoded_is_decoded_without_a_fetch(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1")
    agent.cache.files.add(play.sha256)
    engine.prefetch(play)
    engine.prefetch(play)
    assert agent.cache.fetches == []
    assert [d[0] for d in agent.pcm.decodes] == [play.sha256]


def inline(media_b64: str) -> Play:
    """A play whose media (claimed: b"tone") rides in the command."""
    return Play(broadcast_id="b1", priority="emergency", media_url="http://m/x", media_b64=media_b64,
                sha256=hashlib.sha256(b"tone").hexdigest(), duration_ms=1, start_at=0)  # fmt: skip


def test_inline_media_is_cached_when_its_hash_matches(
    agent: Agent, engine: PlaybackEngine, caplog: pytest.LogCaptureFixture
) -> None:
    play = inline(base64.b64encode(b"tone").decode())
    engine.take_inline(play)
    assert agent.cache.has(play.sha256)
    agent.cache.store_error = OSError("must not be called again")
    with caplog.at_level(logging.WARNING, logger=fetching_module.__name__):
        engine.take_inline(play)  # already cached: nothing to do
    assert caplog.messages == []
    engine.take_inline(Play(**{**play.to_dict(), "sha256": sha("other"), "media_b64": None}))
    assert agent.cache.files == {play.sha256}


@pytest.mark.parametrize(
    ("media_b64", "store_error"),
    [("dG9u!ZQ==", None), (base64.b64encode(b"other").decode(), None), ("dG9uZQ==", OSError("disk full"))],
)
def test_unusable_inline_media_is_logged_and_fetched_by_url_instead(
    agent: Agent,
    engine: PlaybackEngine,
    caplog: pytest.LogCaptureFixture,
    media_b64: str,
    store_error: Exception | None,
) -> None:
    agent.cache.store_error = store_error
    play = inline(media_b64)
    with caplog.at_level(logging.WARNING, logger=fetching_module.__name__):
        engine.take_inline(play)
    assert not agent.cache.has(play.sha256)
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith(f"inline media {play.sha256[:12]} not usable (")
    assert caplog.messages[0].endswith("); fetching it by URL")
    if store_error is not None:
        assert caplog.messages[0] == f"inline media {play.sha256[:12]} not usable (disk full); fetching it by URL"


# --- failures and retries ----------------------------------------------------------------------------------


def test_a_refused_fetch_fails_every_play_of_that_media_at_once(agent: Agent, engine: PlaybackEngine) -> None:
    a, b, other = item("b1", media="m"), item("b2", media="m", start_in=20), item("b3")
    for play in (a, b, other):
        engine.accept(play)
    error = SpeakerError("speakers.fetch_refused", "拒绝", "x" * 300)
    agent.cache.fetches[0][2].fail(error)
    assert agent.events() == [("failed", "b1", "fetch_refused"), ("failed", "b2", "fetch_refused")]
    assert agent.receipts[0]["detail"] == {"error": "x" * 200}
    assert list(agent.planner.pending) == ["p-b3"]
    assert agent.persisted == 1
    assert [h.fn for h in agent.timers.timers if not h.cancelled() and h.fn.__name__ == "_retry_fetch"] == []


def test_a_failed_fetch_is_retried_while_the_play_can_still_start(
    agent: Agent, engine: PlaybackEngine, device: Device, caplog: pytest.LogCaptureFixture
) -> None:
    play = item("b1", start_in=5, expires_in=60)
    engine.accept(play)
    delays = []
    with caplog.at_level(logging.INFO, logger=fetching_module.__name__):
        for attempt in range(7):
            agent.cache.fetches[attempt][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
            retry = [h for h in device.timers if not h.cancelled() and h.fn.__name__ == "_retry_fetch"]
            if not retry:
                break
            delays.append(retry[0].when - device.now)
            device.run_until(retry[0].when)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0][: len(delays)]
    assert caplog.messages[0] == f"media {play.sha256[:12]} not fetched (fetch_failed); retrying in 1 s"
    assert agent.events() == [("failed", "b1", "fetch_failed")], "given up once the next try would be too late"
    assert sum(delays) < 5 + 60 <= sum(delays) + min(2 * delays[-1], FETCH_RETRY_MAX_S)


def test_a_fetch_that_succeeds_after_a_retry_starts_over_at_one_second(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    play = item("b1", start_in=100, expires_in=600)
    engine.accept(play)
    agent.cache.fetches[0][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    device.run_until(device.now + 1)
    agent.cache.fetches[1][2].ok()
    agent.pcm.decodes[0][3].fail(SpeakerError("speakers.cache_corrupt", "坏", "corrupt"))  # fetched once more
    agent.cache.fetches[2][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    retry = [h for h in device.timers if not h.cancelled() and h.fn.__name__ == "_retry_fetch"]
    assert [h.when - device.now for h in retry] == [1.0]


def test_an_error_that_is_not_a_speaker_error_counts_as_a_failed_fetch(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1", start_in=0.5, expires_in=0.5)
    engine.accept(play)
    agent.cache.fetches[0][2].fail(OSError("boom"))
    assert agent.events() == [("failed", "b1", "fetch_failed")]
    assert agent.receipts[0]["detail"] == {"error": "boom"}


def test_a_cancelled_fetch_counts_as_a_failed_fetch(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1", start_in=0.5, expires_in=0.5)
    engine.accept(play)
    agent.cache.fetches[0][2].cancel()
    assert agent.events() == [("failed", "b1", "fetch_failed")]
    assert agent.receipts[0]["detail"] == {"error": "cancelled"}


def test_a_retry_for_media_nobody_waits_for_any_more_does_nothing(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    play = item("b1", start_in=100, expires_in=600)
    engine.accept(play)
    agent.cache.fetches[0][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    engine.stop("b1")
    device.run_until(device.now + 1)
    assert len(agent.cache.fetches) == 1
    assert engine._backoff == {}


def test_a_corrupt_cached_file_is_discarded_reported_and_fetched_again(
    agent: Agent, engine: PlaybackEngine, caplog: pytest.LogCaptureFixture
) -> None:
    play = item("b1")
    agent.cache.files.add(play.sha256)
    agent.output.records = True
    agent.cache_repairs = 3
    engine.accept(play)
    with caplog.at_level(logging.WARNING, logger=fetching_module.__name__):
        agent.pcm.decodes[0][3].fail(SpeakerError("speakers.cache_corrupt", "坏", "corrupt"))
    assert caplog.messages == [f"spk-1: cached media {play.sha256[:12]} was corrupt; fetching it again"]
    assert agent.cache.discarded == [play.sha256]
    assert agent.cache_repairs == 4
    assert agent.published == 1
    assert [(u, h) for u, h, _ in agent.cache.fetches] == [(play.media_url, play.sha256)]
    (event,) = agent.output.recorded
    assert {k: v for k, v in event.items() if k != "at"} == {
        "event": "cache_corrupt", "sha256": play.sha256, "broadcast_id": "b1", "command_id": "c-b1",
        "speaker_id": "spk-1"}  # fmt: skip
    assert agent.events() == []


def test_a_repair_is_not_written_to_an_output_that_keeps_no_timeline(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1")
    agent.cache.files.add(play.sha256)
    engine.accept(play)
    agent.pcm.decodes[0][3].fail(SpeakerError("speakers.cache_corrupt", "坏", "corrupt"))
    assert agent.output.recorded == []
    assert agent.cache_repairs == 1


@pytest.mark.parametrize("error", [SpeakerError("speakers.decode_failed", "坏", "bad audio"), None])
def test_audio_that_cannot_be_decoded_fails_its_plays(
    agent: Agent, engine: PlaybackEngine, error: SpeakerError | None
) -> None:
    play = item("b1", start_in=0.5, expires_in=0.5)
    agent.cache.files.add(play.sha256)
    engine.accept(play)
    decoded = agent.pcm.decodes[0][3]
    decoded.cancel() if error is None else decoded.fail(error)
    reason = "decode_failed" if error else "fetch_failed"
    assert agent.events() == [("failed", "b1", reason)]
    assert agent.receipts[0]["detail"] == {"error": "bad audio" if error else "cancelled"}
    engine.prefetch(play)
    assert len(agent.pcm.decodes) == 2, "no longer counted as under way"


def test_late_answers_after_close_change_nothing(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    a, b = item("b1"), item("b2", start_in=0)
    engine.accept(a)
    agent.cache.files.add(b.sha256)
    engine.accept(b)
    at_hand(agent, item("b0", start_in=0))
    engine.accept(item("b0", start_in=0))
    playing = engine.active
    assert playing is not None
    wake = engine._wake
    engine.close()
    assert engine.closed
    assert wake is not None
    assert wake.cancelled()
    assert all(t.cancelled() for t in playing.timers)
    agent.cache.fetches[0][2].fail(OSError("late"))
    agent.pcm.decodes[0][3].ok()
    engine._retry_fetch(a.sha256)
    engine.replan()
    assert agent.events() == []
    assert len(agent.cache.fetches) == 1


# --- planning, volume, start, preemption, stop -------------------------------------------------------------


def test_a_queued_play_of_a_broadcast_already_played_is_refused_when_due(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1")
    agent.done["b1"] = T0 + 999
    at_hand(agent, play)
    agent.planner.add(play)
    engine.replan()
    assert agent.events() == [("refused", "b1", "already_played")]
    assert agent.persisted == 1
    assert agent.planner.pending == {}


def test_replanning_with_nothing_to_do_saves_nothing(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    engine.replan()
    assert agent.persisted == 0
    assert device.armed() == []
    agent.planner.add(item("b1", start_in=30))
    engine.replan()
    engine.replan()
    assert agent.persisted == 0
    assert device.armed() == [(T0 + 30 - LEAD, "replan")], "one wake, the earlier one cancelled"


def test_a_missed_play_and_one_in_quiet_hours_are_reported(device: Device) -> None:
    agent = Agent(device, quiet=[(0, 24 * 60)])
    engine = PlaybackEngine(agent)  # type: ignore[arg-type]
    missed, quiet = item("b1", start_in=-10, expires_in=5), item("b2", start_in=0)
    at_hand(agent, quiet)
    for play in (missed, quiet):
        agent.planner.add(play)
    engine.replan(persist=False)
    assert agent.events() == [("missed", "b1", "expired"), ("refused", "b2", "quiet_hours")]
    assert agent.persisted == 0
    urgent = item("b3", start_in=0, priority="emergency")
    at_hand(agent, urgent)
    engine.accept(urgent)
    assert [p["label"] for p in agent.output.plays] == ["c-b3"], "an emergency plays in quiet hours"


@pytest.mark.parametrize(
    ("priority", "own", "device_volume", "expected"),
    [
        ("emergency", 10, 60, 80),
        ("normal", 90, 60, 80),
        ("normal", 30, 60, 30),
        ("normal", None, 60, 60),
        ("normal", None, 95, 80),
        ("normal", 80, 60, 80),
        ("normal", 0, 60, 0),
    ],
)
def test_volume_emergency_at_the_cap_others_at_their_own_or_the_device_volume_capped(
    agent: Agent, engine: PlaybackEngine, priority: str, own: int | None, device_volume: int, expected: int
) -> None:
    agent.volume = device_volume
    assert engine.volume_for(item("b", priority=priority, volume=own)) == expected


def test_a_play_starting_late_reports_how_late_and_the_file_it_wrote(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    agent.output.latency, agent.output.file = 0.01234, "/sink/c-b1.wav"
    play = item("b1", start_in=0, repeat=2)
    at_hand(agent, play)
    engine.accept(play)
    device.run_until(T0 + 0.01234)
    assert agent.receipts[0]["detail"] == {"priority": "normal", "volume": 60, "file": "/sink/c-b1.wav",
                                           "late_ms": 12.3}  # fmt: skip
    assert agent.receipts[0]["at"] == T0 + 0.01234
    assert agent.output.plays[0]["repeat"] == 2
    device.run_until(T0 + 3)
    assert agent.receipts[1]["detail"] == {"played_ms": 2000, "file": "/sink/c-b1.wav"}
    assert agent.receipts[1]["at"] == T0 + 2.01234


def test_a_millisecond_late_is_on_time(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    device.now = 0.0  # small numbers: the lateness is exactly 0.001 s
    agent.output.latency = 0.001
    play = PlayItem(**{**item("b1").to_dict(), "start_at": OFFSET, "expires_at": OFFSET + 60})
    at_hand(agent, play)
    engine.accept(play)
    device.run_until(0.001)
    assert agent.receipts[0]["detail"] == {"priority": "normal", "volume": 60}


def test_decoded_audio_gone_at_start_time_fails_the_play(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    play = item("b1", start_in=0)
    at_hand(agent, play)
    agent.planner.add(play)
    real_peek = agent.pcm.peek
    agent.pcm.peek = lambda h: real_peek(h) if engine.active is None and not agent.planner.current else None  # type: ignore[method-assign]
    engine.replan()
    assert agent.events() == [("failed", "b1", "decode_failed")]
    assert agent.receipts[0]["detail"] == {"error": "decoded audio no longer at hand"}
    assert agent.planner.current is None
    assert engine.active is None
    assert agent.output.plays == []


def test_an_output_error_fails_the_play_and_frees_the_speaker(agent: Agent, engine: PlaybackEngine) -> None:
    play = item("b1", start_in=0)
    at_hand(agent, play)
    agent.output.error = SpeakerError("speakers.output", "设备错误", "device busy")
    engine.accept(play)
    assert agent.events() == [("failed", "b1", "output_error")]
    assert agent.receipts[0]["detail"] == {"error": "device busy"}
    assert agent.planner.current is None
    assert engine.active is None
    assert agent.done == {}


def alarm_waiting(agent: Agent, engine: PlaybackEngine, device: Device, start_in: float) -> None:
    """A routine play `r` sounding since T0, an emergency `a` due at T0 + `start_in` handed to the output to cut it
    off: the clock one arm lead before that."""
    routine, alarm = item("r", start_in=0), item("a", start_in=start_in, priority="emergency")
    at_hand(agent, routine, alarm)
    engine.accept(routine)
    device.run_until(T0)
    engine.accept(alarm)
    device.run_until(T0 + start_in - LEAD)


def test_an_emergency_preempts_a_routine_play_the_instant_it_begins(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    alarm_waiting(agent, engine, device, 0.5)
    assert agent.events() == [("started", "r", None)], "the routine play still sounds until the alarm begins"
    assert agent.output.plays[-1]["start_at"] == T0 + 0.5
    assert agent.output.plays[-1]["volume"] == 80
    device.run_until(T0 + 0.5)
    assert agent.events() == [("started", "r", None), ("preempted", "r", None), ("started", "a", None)]
    preempted = agent.receipts[1]
    assert preempted["at"] == T0 + 0.5
    assert preempted["detail"] == {"played_ms": 500, "by": "a"}
    device.run_until(T0 + 5)
    assert agent.events()[-1] == ("finished", "a", None)
    assert len(agent.receipts) == 4, "the preempted play never reports finished"


def test_a_preempting_play_that_fails_to_start_still_ends_the_one_it_replaced(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    routine, alarm = item("r", start_in=0), item("a", start_in=1, priority="emergency")
    at_hand(agent, routine, alarm)
    engine.accept(routine)
    device.run_until(T0 + 0.5)
    agent.output.error = SpeakerError("speakers.output", "设备错误", "device busy")
    engine.accept(alarm)
    device.run_until(T0 + 1 - LEAD)
    assert agent.events() == [("started", "r", None), ("preempted", "r", None), ("failed", "a", "output_error")]
    assert agent.receipts[1]["detail"] == {"played_ms": 750, "by": "a"}
    assert agent.receipts[1]["at"] == T0 + 1 - LEAD


def test_an_end_before_the_first_sample_is_reported_at_the_first_sample(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    play = item("b1", start_in=1)
    at_hand(agent, play)
    engine.accept(play)
    device.run_until(T0 + 1 - LEAD)
    assert engine.stop(None) == 1
    assert agent.events() == [("stopped", "b1", "stop_command")]
    assert agent.receipts[0]["at"] == T0 + 1
    assert agent.receipts[0]["detail"] == {"played_ms": 0}


def test_stop_ends_the_play_or_drops_the_queued_plays_of_that_broadcast(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    agent.output.file = "/sink/x.wav"
    now_playing, queued, again, other = (item("b1", start_in=0), item("b2", start_in=60),
                                         item("b2", start_in=70, media="m2"), item("b3", start_in=90))  # fmt: skip
    again = PlayItem(**{**again.to_dict(), "play_id": "p-b2-again"})
    at_hand(agent, now_playing)
    for play in (now_playing, queued, again, other):
        engine.accept(play)
    device.run_until(T0 + 0.75)
    persisted = agent.persisted
    assert engine.stop("b2") == 2
    assert agent.events()[1:] == [("stopped", "b2", "cancelled")] * 2
    assert agent.done["b2"] == again.expires_at
    assert engine.active is not None
    assert engine.stop("b1") == 1
    assert agent.events()[3:] == [("stopped", "b1", "stop_command")]
    assert agent.receipts[3]["detail"] == {"played_ms": 750, "file": "/sink/x.wav"}
    assert agent.receipts[3]["at"] == T0 + 0.75
    assert engine.active is None
    assert agent.planner.current is None
    assert list(agent.planner.pending) == ["p-b3"]
    assert agent.persisted == persisted, "the caller saves"
    device.run_until(T0 + 5)
    assert agent.events()[-1] == ("stopped", "b1", "stop_command"), "the stopped play never reports finished"
    assert engine.stop("nothing") == 0
    assert engine.stop(None) == 1
    assert agent.planner.pending == {}


def test_a_stop_before_the_first_sample_is_not_reported_as_played_to_a_file(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    agent.output.file = "/sink/x.wav"
    play = item("b1", start_in=1)
    at_hand(agent, play)
    engine.accept(play)
    device.run_until(T0 + 1 - LEAD)
    engine.stop("b1")
    assert agent.receipts[0]["detail"] == {"played_ms": 0}


def test_stopping_a_preempting_play_before_it_begins_lets_the_play_it_would_cut_off_play_on(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    alarm_waiting(agent, engine, device, 1)
    assert engine.stop("a") == 1
    assert agent.events() == [("started", "r", None), ("stopped", "a", "stop_command")]
    assert agent.receipts[1]["detail"] == {"played_ms": 0}
    assert engine.active is not None
    assert engine.active.item is agent.planner.current
    assert agent.planner.current.broadcast_id == "r"
    assert agent.planner.current_end == pytest.approx(T0 + 2 + OFFSET, abs=1e-6)
    device.run_until(T0 + 10)
    assert agent.events()[2:] == [("finished", "r", None)]
    assert agent.receipts[2]["at"] == T0 + 2, "heard to its end"


def test_stopping_everything_while_a_play_waits_to_preempt_stops_the_one_still_playing_too(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    alarm_waiting(agent, engine, device, 1)
    assert engine.stop(None) == 1
    assert agent.events() == [
        ("started", "r", None),
        ("stopped", "a", "stop_command"),
        ("stopped", "r", "stop_command"),
    ]
    assert agent.receipts[2]["at"] == T0 + 1 - LEAD
    assert engine.active is None
    device.run_until(T0 + 10)
    assert len(agent.receipts) == 3


def test_an_agent_stopping_while_a_play_waits_to_preempt_reports_both_plays_failed(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    alarm_waiting(agent, engine, device, 1)
    engine.halt()
    assert agent.events() == [
        ("started", "r", None),
        ("failed", "a", "agent_stopped"),
        ("failed", "r", "agent_stopped"),
    ]
    assert agent.receipts[2]["detail"] == {"played_ms": 750}
    assert engine.active is None
    assert agent.planner.current is None


def test_a_play_preempted_before_it_began_hands_what_it_would_have_cut_off_to_the_play_that_preempts_it(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    routine, urgent = item("r", start_in=0), item("u", start_in=1, priority="urgent", seq=2)
    alarm = item("a", start_in=0.9, priority="emergency", seq=3)
    at_hand(agent, routine, urgent, alarm)
    engine.accept(routine)
    device.run_until(T0)
    engine.accept(urgent)
    device.run_until(T0 + 0.8)  # `u` is handed to the output to cut `r` off at T0 + 1
    engine.accept(alarm)  # the alarm begins first, at T0 + 0.9
    device.run_until(T0 + 10)
    assert agent.events() == [("started", "r", None), ("preempted", "u", None), ("preempted", "r", None),
                              ("started", "a", None), ("finished", "a", None)]  # fmt: skip
    assert [r["at"] for r in agent.receipts[2:4]] == [T0 + 0.9] * 2, "the output moved from `r` to the alarm"
    assert agent.receipts[1]["at"] == T0 + 1, "`u` never began: its end is its own start instant"
    assert [r["detail"]["by"] for r in agent.receipts[1:3]] == ["a", "a"]
    assert agent.receipts[1]["detail"]["played_ms"] == 0


def test_a_play_that_ends_early_on_its_own_is_not_reported_again(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    play = item("b1", start_in=0)
    at_hand(agent, play)
    engine.accept(play)
    assert engine.active is not None
    engine.active.playback.ended = True
    device.run_until(T0 + 5)
    assert agent.events() == []


def test_plays_of_one_media_that_can_wait_are_retried_and_the_others_fail_now(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    patient, hurried = item("b1", media="m", start_in=50, expires_in=600), item("b2", media="m", expires_in=-9.5)
    engine.accept(patient)
    agent.planner.add(hurried)
    agent.cache.fetches[0][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    assert agent.events() == [("failed", "b2", "fetch_failed")]
    assert list(agent.planner.pending) == ["p-b1"]


def test_after_giving_up_the_next_play_of_that_media_starts_its_retries_at_one_second(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first = item("b1", media="m", start_in=0, expires_in=2)
    engine.accept(first)
    agent.cache.fetches[0][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    device.run_until(device.now + 1)
    agent.cache.fetches[1][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    assert agent.events() == [("failed", "b1", "fetch_failed")]
    later = item("b2", media="m", start_in=100, expires_in=600)
    engine.accept(later)
    agent.cache.fetches[2][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    retry = [h for h in device.timers if not h.cancelled() and h.fn.__name__ == "_retry_fetch"]
    assert [h.when - device.now for h in retry] == [1.0]


def test_a_retry_timer_that_finds_nothing_to_do_is_harmless(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    waiting = item("b1", media="m", start_in=100, expires_in=600)
    engine.accept(waiting)
    agent.cache.fetches[0][2].fail(SpeakerError("speakers.fetch_failed", "失败", "down"))
    other = item("b2", media="m", start_in=0)
    engine.accept(other)  # fetched at once for the other play: the media is at hand, the backoff forgotten
    agent.cache.files.add(other.sha256)
    agent.cache.fetches[1][2].ok()
    engine.stop(None)
    device.run_until(device.now + 1)
    assert len(agent.cache.fetches) == 2


def test_a_timer_that_starts_a_play_saves_once_and_so_does_a_finish_that_starts_the_next(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second = item("b1", start_in=1), item("b2", start_in=1.5)
    at_hand(agent, first, second)
    agent.planner.add(first)
    agent.planner.add(second)
    engine.replan()
    assert agent.persisted == 0
    device.run_until(T0 + 1 - LEAD)
    assert agent.persisted == 1
    assert [p["label"] for p in agent.output.plays] == ["c-b1"]
    device.run_until(T0 + 1)
    saved = agent.persisted
    device.run_until(T0 + 3)
    assert [p["label"] for p in agent.output.plays] == ["c-b1", "c-b2"]
    assert agent.persisted == saved + 1


def test_a_stop_that_lets_the_next_play_start_leaves_the_saving_to_the_caller(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second = item("b1", start_in=0), item("b2", start_in=0.1)
    at_hand(agent, first, second)
    engine.accept(first)
    engine.accept(second)
    device.run_until(T0 + 0.5)
    saved = agent.persisted
    engine.stop("b1")
    assert [p["label"] for p in agent.output.plays] == ["c-b1", "c-b2"]
    assert agent.persisted == saved


def test_after_a_failed_preempting_start_the_speaker_is_free(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    routine, alarm = item("r", start_in=0), item("a", start_in=1, priority="emergency")
    at_hand(agent, routine, alarm)
    engine.accept(routine)
    device.run_until(T0 + 0.5)
    agent.output.error = SpeakerError("speakers.output", "设备错误", "device busy")
    engine.accept(alarm)
    device.run_until(T0 + 1)
    assert engine.active is None
    assert engine.stop(None) == 0


def test_a_preempting_play_whose_audio_is_gone_still_ends_the_one_it_replaced(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    routine, alarm = item("r", start_in=0), item("a", start_in=1, priority="emergency")
    at_hand(agent, routine, alarm)
    engine.accept(routine)
    device.run_until(T0 + 0.5)
    real_peek = agent.pcm.peek
    agent.pcm.peek = lambda h: None if agent.planner.current == alarm else real_peek(h)  # type: ignore[method-assign]
    engine.accept(alarm)
    device.run_until(T0 + 1)
    assert agent.events() == [("started", "r", None), ("preempted", "r", None), ("failed", "a", "decode_failed")]


def test_a_preempting_play_stopped_after_it_began_is_reported_once(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    alarm_waiting(agent, engine, device, 0.5)
    device.run_until(T0 + 1)
    assert engine.stop("a") == 1
    assert agent.events() == [("started", "r", None), ("preempted", "r", None), ("started", "a", None),
                              ("stopped", "a", "stop_command")]  # fmt: skip


def test_only_a_play_that_ran_to_its_end_is_ended_as_completed(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    routine, alarm = item("r", start_in=0), item("a", start_in=0.5, priority="emergency")
    at_hand(agent, routine, alarm)
    engine.accept(routine)
    device.run_until(T0)
    first = engine.active
    engine.accept(alarm)
    device.run_until(T0 + 0.5)
    second = engine.active
    device.run_until(T0 + 5)
    assert first is not None
    assert second is not None
    assert (first.playback.completed, second.playback.completed) == (False, True)  # type: ignore[attr-defined]


# --- the next play follows without a gap ---------------------------------------------------------------------


def arm_tone_and_speech(agent: Agent, engine: PlaybackEngine, device: Device) -> None:
    """An emergency tone (T0 to T0 + 2) playing, its speech armed to follow: the clock a horizon before the end."""
    tone, speech = item("tone", start_in=0, priority="emergency"), item("speech", start_in=0.5, priority="emergency")
    at_hand(agent, tone, speech)
    engine.accept(tone)
    engine.accept(speech)
    device.run_until(T0 + 2 - LEAD)


def test_the_next_play_is_handed_over_ahead_and_begins_the_instant_the_one_before_ends(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    arm_tone_and_speech(agent, engine, device)
    assert [p["start_at"] for p in agent.output.plays] == [T0, T0 + 2], "armed a horizon before the tone ends"
    assert agent.output.plays[1]["volume"] == 80, "an emergency follows at the speaker's maximum volume too"
    assert "speech" not in agent.done, "armed, not begun: a restart would queue it again"
    device.now = T0 + 2.3  # the process is busy when the tone ends: its timers run 300 ms late
    device.run_until(T0 + 2.3)
    assert agent.events() == [("started", "tone", None), ("finished", "tone", None), ("started", "speech", None)]
    assert [r["at"] for r in agent.receipts] == [T0, T0 + 2, T0 + 2], "the speech began as the tone ended"
    assert engine.active is not None
    assert engine.active.item.broadcast_id == "speech"
    assert engine.following is None
    assert "speech" in agent.done
    assert agent.planner.current_end == pytest.approx(T0 + 4 + OFFSET, abs=1e-6)
    device.run_until(T0 + 5)
    assert agent.events()[-1] == ("finished", "speech", None)
    assert agent.planner.current is None


def test_an_update_stops_the_armed_speech_and_its_successor_follows_the_tone_instead(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    tone, speech = item("tone", start_in=0, priority="emergency"), item("speech", start_in=0.5, priority="emergency")
    newer = item("newer", start_in=1, priority="emergency", seq=2)
    at_hand(agent, tone, speech, newer)
    engine.accept(tone)
    engine.accept(speech)
    device.run_until(T0 + 2 - LEAD)
    armed = engine.following
    assert engine.stop("speech") == 1
    assert agent.events() == [("started", "tone", None), ("stopped", "speech", "stop_command")]
    assert agent.receipts[-1]["detail"] == {"played_ms": 0}
    assert armed is not None
    assert armed.playback.ended
    assert "speech" in agent.done, "a stopped play never starts"
    engine.accept(newer)
    assert agent.output.plays[-1]["start_at"] == T0 + 2, "no second tone: the new speech follows the same one"
    device.run_until(T0 + 2)
    assert agent.events()[2:] == [("finished", "tone", None), ("started", "newer", None)]
    assert agent.receipts[-1]["at"] == T0 + 2


def test_when_the_play_in_progress_is_stopped_the_armed_one_starts_at_once(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second = item("b1", start_in=0), item("b2", start_in=0.5)
    at_hand(agent, first, second)
    engine.accept(first)
    engine.accept(second)
    device.run_until(T0 + 2 - LEAD)
    armed = engine.following
    assert engine.stop("b1") == 1
    assert armed is not None
    assert armed.playback.completed is False  # type: ignore[attr-defined]
    assert agent.output.plays[-1]["start_at"] == T0 + 2 - LEAD, "not at the end the stopped play would have had"
    device.run_until(device.now)
    assert agent.events() == [("started", "b1", None), ("stopped", "b1", "stop_command"), ("started", "b2", None)]
    assert agent.receipts[-1]["at"] == T0 + 2 - LEAD


def test_an_emergency_that_preempts_returns_the_armed_play_to_the_queue_to_play_after_it(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second = item("b1", start_in=0), item("b2", start_in=0.5)
    alarm = item("a", start_in=1.9, priority="emergency", seq=3)
    at_hand(agent, first, second, alarm)
    engine.accept(first)
    engine.accept(second)
    device.run_until(T0 + 2 - LEAD)
    assert engine.following is not None
    engine.accept(alarm)
    assert engine.following is None
    assert list(agent.planner.pending) == ["p-b2"]
    device.run_until(T0 + 3.9)
    assert agent.events() == [("started", "b1", None), ("preempted", "b1", None), ("started", "a", None),
                              ("finished", "a", None), ("started", "b2", None)]  # fmt: skip
    assert agent.receipts[-1]["at"] == T0 + 3.9, "after the alarm, without a gap"
    assert agent.output.plays[-1]["start_at"] == T0 + 3.9


def test_a_follower_whose_audio_is_gone_or_whose_output_fails_is_reported_and_the_play_runs_on(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second, third = item("b1", start_in=0), item("b2", start_in=0.5, seq=2), item("b3", start_in=0.6, seq=3)
    at_hand(agent, first, second, third)
    engine.accept(first)
    device.run_until(T0 + 1)
    engine.ready = lambda _item: True  # type: ignore[method-assign]
    del agent.pcm.items[second.sha256]  # evicted between planning and now
    engine.accept(second)
    device.run_until(T0 + 2 - LEAD)
    assert agent.events() == [("started", "b1", None), ("failed", "b2", "decode_failed")]
    agent.output.error = SpeakerError("speakers.output", "设备错误", "device busy")
    engine.accept(third)
    assert agent.events()[-1] == ("failed", "b3", "output_error")
    assert agent.planner.after is None
    agent.output.error = None
    device.run_until(T0 + 3)
    assert agent.events()[-1] == ("finished", "b1", None)
    assert engine.active is None


def test_the_followed_play_ends_before_its_follower_begins_whichever_timer_runs_first(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    arm_tone_and_speech(agent, engine, device)
    follower = engine.following
    assert follower is not None
    device.now = T0 + 2
    engine._begun(follower)  # the follower's timer ahead of the tone's end timer at the same instant
    assert agent.events() == [("started", "tone", None), ("finished", "tone", None), ("started", "speech", None)]
    assert engine.active is follower


def test_a_play_that_takes_the_armed_followers_place_is_armed_once_and_each_plays_once(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, quiet = item("b1", start_in=0), item("bg", start_in=0.5, priority="background", seq=2)
    later = item("b2", start_in=2.1, seq=3)  # due once the horizon reaches it, after `bg` was armed
    at_hand(agent, first, quiet, later)
    engine.accept(first)
    engine.accept(quiet)
    engine.accept(later)
    device.run_until(T0 + 2 - LEAD)
    assert engine.following is not None
    assert engine.following.item.broadcast_id == "bg"
    device.run_until(T0 + 2.1 - LEAD)
    assert engine.following is not None
    assert engine.following.item.broadcast_id == "b2"
    assert agent.planner.after is engine.following.item, "the planner and the output agree on what follows"
    assert list(agent.planner.pending) == ["p-bg"], "the outranked one is back in the queue, once"
    device.run_until(T0 + 7)
    assert agent.events() == [("started", "b1", None), ("finished", "b1", None), ("started", "b2", None),
                              ("finished", "b2", None), ("started", "bg", None), ("finished", "bg", None)]  # fmt: skip
    assert [p["label"] for p in agent.output.plays] == ["c-b1", "c-bg", "c-b2", "c-bg"]
    assert [r["at"] for r in agent.receipts if r["event"] == "started"] == [T0, T0 + 2.1, T0 + 4.1]


def test_a_follower_already_begun_when_its_timers_run_late_is_never_taken_back_to_play_again(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, quiet = item("u", start_in=0, priority="urgent"), item("bg", start_in=0.5, priority="background", seq=2)
    later = item("n", start_in=2.2, seq=3)
    at_hand(agent, first, quiet, later)
    engine.accept(first)
    engine.accept(quiet)
    device.run_until(T0 + 2 - LEAD)
    device.now = T0 + 2.2  # the process is busy: `u` ended and `bg` began on the output, their timers not run yet
    engine.accept(later)  # outranks `bg`, which the output began 200 ms ago
    device.run_until(T0 + 9)
    assert agent.events() == [("started", "u", None), ("finished", "u", None), ("started", "bg", None),
                              ("preempted", "bg", None), ("started", "n", None), ("finished", "n", None)]  # fmt: skip
    assert [r["at"] for r in agent.receipts][:3] == [T0, T0 + 2, T0 + 2], "as the output really played them"
    assert [p["label"] for p in agent.output.plays] == ["c-u", "c-bg", "c-n"]


# --- random sequences: the rules that hold whatever happens --------------------------------------------------

FINAL = {"finished", "preempted", "stopped", "missed", "refused", "failed"}


def check_agreement(agent: Agent, engine: PlaybackEngine) -> None:
    """The planner and the output agree on what plays and what is armed; nothing is both queued and armed."""
    planner = agent.planner
    assert (engine.following.item if engine.following else None) is planner.after
    assert (engine.active.item if engine.active else None) is planner.current
    held = {i.play_id for i in (planner.current, planner.after) if i is not None}
    assert not held & set(planner.pending), "a play both queued and on the output"


@pytest.mark.parametrize("seed", range(1500))  # 30,000 seeds pass too (two minutes)
def test_random_commands_stops_and_late_timers_never_play_anything_twice_or_at_once(
    agent: Agent, engine: PlaybackEngine, device: Device, seed: int
) -> None:
    rng = random.Random(seed)
    accepted: list[PlayItem] = []
    for step in range(40):
        roll = rng.random()
        if roll < 0.45:
            agent.output.duration = rng.choice([0.4, 1.0, 2.0, 3.0])
            new = item(f"b{step}", start_in=device.now - T0 + rng.uniform(0, 3), seq=step + 1,
                       priority=rng.choice(["background", "normal", "normal", "urgent", "emergency"]),
                       expires_in=rng.uniform(0.5, 15))  # fmt: skip
            at_hand(agent, new)
            accepted.append(new)
            engine.accept(new)
        elif roll < 0.75:
            device.run_until(device.now + rng.uniform(0.05, 1.5))
        elif roll < 0.92:
            device.now += rng.uniform(0.01, 0.6)  # a busy process: timers due now run late, at the next step
        elif accepted:
            engine.stop(rng.choice(accepted).broadcast_id if rng.random() < 0.85 else None)
        check_agreement(agent, engine)
    device.run_until(device.now + 120)
    check_agreement(agent, engine)
    assert engine.active is None
    assert not agent.planner.pending
    spans: list[tuple[float, float, str]] = []
    for play in accepted:
        mine = [r for r in agent.receipts if r["broadcast_id"] == play.broadcast_id]
        events = [r["event"] for r in mine]
        assert [e for e in events if e in FINAL] == events[-1:], (seed, play.broadcast_id, events)
        assert events.count("started") <= 1, (seed, play.broadcast_id, events)
        if "started" in events:
            begin, end = mine[events.index("started")]["at"], mine[-1]["at"]
            assert begin >= play.start_at - OFFSET - 1e-9, "never before its start instant"
            spans.append((begin, end, play.broadcast_id))
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        assert begin >= end - 1e-9, f"seed {seed}: {second} began before {first} ended"


def test_a_stop_while_timers_run_late_drops_a_queued_play_before_anything_could_arm_it(
    agent: Agent, engine: PlaybackEngine, device: Device
) -> None:
    first, second, third = item("b1", start_in=0), item("b2", start_in=0.5, seq=2), item("b3", start_in=1, seq=3)
    at_hand(agent, first, second, third)
    engine.accept(first)
    agent.output.duration = 0.2
    engine.accept(second)
    engine.accept(third)
    device.run_until(T0 + 2 - LEAD)  # b2 armed to follow b1 at T0 + 2, for 0.2 s; b3 queued after it
    device.now = T0 + 2.3  # busy: b1 ended, b2 began and ended, b3 would follow now; no timer has run
    assert engine.stop("b3") == 1
    assert ("stopped", "b3", "cancelled") in agent.events()
    assert ("started", "b3", None) not in agent.events(), "never handed to the output"
    device.run_until(T0 + 5)
    assert agent.events() == [("started", "b1", None), ("stopped", "b3", "cancelled"), ("finished", "b1", None),
                              ("started", "b2", None), ("finished", "b2", None)]  # fmt: skip
    assert [r["at"] for r in agent.receipts[2:]] == [T0 + 2, T0 + 2, T0 + 2.2], "as the output played them"
