"""The fleet's shared timer heap and fair work queue, and the two Ed25519 verifiers agreeing."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.agent import persist
from speakers.agent.audio import PcmCache
from speakers.agent.core import Agent
from speakers.agent.engine import Active
from speakers.agent.outputs import create_output
from speakers.agent.outputs.base import Playback
from speakers.agent.policy import PlayItem
from speakers.agent.store import MemoryStore
from speakers.agent.timers import Timers
from speakers.agent.workqueue import WorkQueue
from speakers.config import AgentConfig
from speakers.messages import Play, ScheduledPlay, ScheduleSnapshot
from speakers.protocol import SignedCommand, Target, command_topic_for_region, encode_command
from speakers.signing import COMMAND_CONTEXT, KeyPair
from speakers.simulator import generated_fleet
from speakers.sodium import sodium_verify


def test_timers_fire_in_order_on_time_and_can_be_cancelled() -> None:
    """Each timer fires no earlier than its instant and in the same loop turn as a plain loop timer set for it.

    The reference timers make the check independent of how busy the machine is: a loaded box delays both alike.
    """
    fired: list[tuple[str, float]] = []
    reference: dict[str, float] = {}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        timers = Timers()
        start = time.time()

        def fire(name: str) -> None:
            fired.append((name, time.time() - start))
            if name == "c":
                done.set_result(None)

        for name, delay in (("c", 0.15), ("a", 0.05), ("b", 0.10), ("never", 0.12)):
            handle = timers.call_later(delay, fire, name)
            if name == "never":
                handle.cancel()
            else:
                loop.call_at(
                    loop.time() + delay - (time.time() - start),
                    lambda n=name: reference.__setitem__(n, time.time() - start),
                )
        timers.call_at(start - 1, fire, "past")
        await asyncio.wait_for(done, timeout=10)
        timers.close()

    asyncio.run(scenario())
    assert [n for n, _ in fired] == ["past", "a", "b", "c"]
    for (name, at), planned in zip(fired[1:], (0.05, 0.10, 0.15), strict=True):
        assert at >= planned - 0.002, f"{name} fired early"
        assert name in reference
        assert abs(at - reference[name]) < 0.03, f"{name} fired at {at}, the loop timer at {reference[name]}"


def test_work_queue_interleaves_with_timers() -> None:
    order: list[str] = []

    async def scenario() -> None:
        queue = WorkQueue(chunk=10)
        loop = asyncio.get_running_loop()
        for i in range(100):
            queue.submit(order.append, f"job{i}")
        loop.call_soon(order.append, "other")
        queue.submit(lambda: 1 / 0)  # a failing job is logged, the queue goes on
        queue.submit(order.append, "last")
        while len(queue):
            await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert order.index("other") < order.index("job50"), "other callbacks run between batches"
    assert order[-1] == "last"
    assert len([o for o in order if o.startswith("job")]) == 100


def test_work_queue_runs_received_jobs_before_later_ones_each_in_order() -> None:
    order: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first_batch, all_done = loop.create_future(), loop.create_future()

        def job(name: str, done: asyncio.Future[None] | None = None) -> None:
            order.append(name)
            if done is not None:
                done.set_result(None)  # wakes the scenario before the queue's next batch

        queue = WorkQueue(chunk=10)
        for i in range(25):
            queue.submit(job, f"receipt{i}", all_done if i == 24 else None, later=True)
        for i in range(15):
            queue.submit(job, f"command{i}", first_batch if i == 9 else None)
        await first_batch  # the tenth job ends the first batch of ten
        assert order == [f"command{i}" for i in range(10)]
        queue.submit(job, "late command")  # arrives while receipts are still queued: goes first
        await asyncio.wait_for(all_done, 5)
        assert len(queue) == 0

    asyncio.run(scenario())
    commands = [f"command{i}" for i in range(15)]
    assert order == [*commands, "late command", *(f"receipt{i}" for i in range(25))]


@pytest.mark.skipif(sodium_verify is None, reason="no libsodium on this machine")
def test_libsodium_and_openssl_agree() -> None:
    key = KeyPair.generate()
    public = key.public_key()
    body = b'{"x":1}'
    good = key.sign(COMMAND_CONTEXT, body)
    forged = KeyPair.generate().sign(COMMAND_CONTEXT, body)
    flipped = bytes([good[0] ^ 1]) + good[1:]
    for signature, message in ((good, body), (good, body + b" "), (forged, body), (flipped, body), (good[:63], body)):
        assert public.verify(COMMAND_CONTEXT, message, signature) == public.verify_openssl(
            COMMAND_CONTEXT, message, signature
        )
    assert public.verify(COMMAND_CONTEXT, body, good)


def test_a_simulated_speakers_receipt_leaves_after_commands_received_later(tmp_path: Path) -> None:
    """In a fleet's shared queue a receipt is outgoing work: commands that arrive after it still go first."""
    config = AgentConfig(speaker_id="q-1", broker_url="mqtt://127.0.0.1:1", username=None, password=None,
                         topic_prefix="p", regions=["1"],
                         server_keys=[KeyPair.generate().public_b64()], state_dir=tmp_path / "s",
                         cache_dir=tmp_path / "c")  # fmt: skip
    order: list[str] = []

    async def scenario() -> None:
        queue = WorkQueue(chunk=10)
        agent = Agent(config, output=create_output("null"), store=MemoryStore(), work_queue=queue)
        agent._publish_receipt = lambda _key, data: order.append(data["event"])  # type: ignore[method-assign]
        agent.report("started", command_id="c-1", broadcast_id="1")
        sent = asyncio.get_running_loop().create_future()
        queue.submit(lambda: (order.append("command"), None))
        queue.submit(lambda: sent.set_result(None), later=True)
        await asyncio.wait_for(sent, 5)

    asyncio.run(scenario())
    assert order == ["command", "started"]


class CapturingClient:
    """Fake MQTT client (names what it was given): what the agent published, in order."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def publish(self, _topic: str, payload: bytes, **_kwargs: object) -> bool:
        """Record the payload."""
        self.sent.append(json.loads(payload))
        return True


def test_a_held_acknowledgement_folds_into_a_started_receipt_still_waiting_in_the_fleets_queue(
    tmp_path: Path,
) -> None:
    """The hold ends while `started` waits behind commands: the acknowledgement still leaves inside it, once."""
    config = AgentConfig(speaker_id="q-2", broker_url="mqtt://127.0.0.1:1", username=None, password=None,
                         topic_prefix="p", regions=["1"],
                         server_keys=[KeyPair.generate().public_b64()], state_dir=tmp_path / "s",
                         cache_dir=tmp_path / "c")  # fmt: skip
    client = CapturingClient()

    async def scenario() -> None:
        queue = WorkQueue(chunk=10)
        agent = Agent(config, output=create_output("null"), store=MemoryStore(), work_queue=queue)
        agent.client = client  # type: ignore[assignment]
        ack = agent.report("acknowledged", command_id="c-1", broadcast_id="1", send_after=-30.0)
        agent.report("started", command_id="c-1", broadcast_id="1")  # queued behind the commands
        for key in list(agent._held):
            agent._release(key)  # the hold's end comes before the queue reaches `started`
        drained = asyncio.get_running_loop().create_future()
        queue.submit(lambda: drained.set_result(None), later=True)
        await asyncio.wait_for(drained, 5)
        assert [r["event"] for r in client.sent] == ["started"]
        assert client.sent[0]["detail"]["acknowledged_at"] == ack["at"]  # type: ignore[index]
        assert not agent._held

    asyncio.run(scenario())


def _tiny_wav() -> bytes:
    """A quarter second of quiet 16 kHz mono audio."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\x01\x00" * 4000)
    return out.getvalue()


_SIGNER = KeyPair.generate()


def _fleet_speaker_and_play(tmp_path: Path, start_in: float, bid: str) -> tuple[AgentConfig, PcmCache, bytes]:
    """A generated fleet's speaker, decoded audio already at hand (as the tone is), and a signed play for it."""
    (config,) = generated_fleet(1, broker_url="mqtt://127.0.0.1:1", server_keys=[_SIGNER.public_b64()],
                                prefix="p", regions=["1"], work_dir=tmp_path)  # fmt: skip
    media = _tiny_wav()
    clip = tmp_path / "clip.wav"
    clip.write_bytes(media)
    pcm = PcmCache()
    pcm.get(hashlib.sha256(media).hexdigest(), clip)
    return config, pcm, _signed_play(config, start_in, bid)


def _signed_play(config: AgentConfig, start_in: float, bid: str, *, priority: str = "emergency", seq: int = 1,
                 region_wide: bool = False) -> bytes:  # fmt: skip
    """A signed play of the tiny clip for `config`'s speaker (or its whole region), starting in `start_in` s."""
    media = _tiny_wav()
    now = time.time()
    play = Play(broadcast_id=bid, priority=priority, media_url="http://127.0.0.1:1/x.wav",
                sha256=hashlib.sha256(media).hexdigest(), duration_ms=250, start_at=now + start_in,
                media_b64=base64.b64encode(media).decode())  # fmt: skip
    target = [Target.region("1") if region_wide else Target.speaker(config.speaker_id)]
    return encode_command(play, signer=_SIGNER, seq=seq, command_id=f"c-{bid}", targets=target, issued_at=now,
                          expires_at=now + 60)  # fmt: skip


@pytest.mark.parametrize("fleet", [True, False], ids=["generated-fleet", "device-default"])
def test_a_generated_fleet_arms_a_play_starting_within_a_second_when_it_accepts_it(tmp_path: Path, fleet: bool) -> None:
    """The fleet's one-second arm lead: armed on acceptance; a real speaker's 250 ms: armed shortly before the start.

    Both begin at the start instant (the output waits for it), so the fleet saves a planning pass, nothing else.
    """
    config, pcm, payload = _fleet_speaker_and_play(tmp_path, 0.8, "7")
    if not fleet:
        config = dataclasses.replace(config, arm_lead_ms=AgentConfig.arm_lead_ms)
    armed: list[tuple[float, float]] = []

    async def scenario() -> bool:
        agent = Agent(config, output=create_output("null"), store=MemoryStore(), pcm=pcm)
        done = asyncio.get_running_loop().create_future()
        play_on_output = agent.output.play

        def recording_play(*args: object, **kwargs: object) -> object:
            armed.append((time.time(), kwargs["start_at"]))  # type: ignore[arg-type]
            done.set_result(None)
            return play_on_output(*args, **kwargs)  # type: ignore[arg-type]

        agent.output.play = recording_play  # type: ignore[method-assign]
        agent.handle_command(agent.own_topic, payload)
        on_acceptance = bool(armed)
        await asyncio.wait_for(done, 5)
        agent.engine.close()
        return on_acceptance

    on_acceptance = asyncio.run(scenario())
    ((at, begins),) = armed  # begins: the start instant the output was given
    assert on_acceptance is fleet
    if not fleet:
        assert 0.0 < begins - at <= 0.26, f"armed {begins - at:.3f} s before the start"


def _start_with_a_command_waiting(tmp_path: Path, bid: str, *, stop_after_start: bool) -> list[str]:
    """Arm a fleet speaker's play, queue a received command, let the start instant come (and a stop, if asked),
    drain the queue; return the events reported and the command's turn, in order (acknowledgements left out)."""
    config, pcm, payload = _fleet_speaker_and_play(tmp_path, 0.5, bid)
    order: list[str] = []

    async def scenario() -> None:
        queue = WorkQueue(chunk=10)
        agent = Agent(config, output=create_output("null"), store=MemoryStore(), work_queue=queue, pcm=pcm)
        report = agent.report
        agent.report = lambda event, *a, **k: (order.append(event), report(event, *a, **k))[1]  # type: ignore[method-assign]
        agent.handle_command(agent.own_topic, payload)
        active = agent.engine.active
        assert active is not None, "armed on acceptance"
        (begins,) = active.timers
        queue.submit(lambda: order.append("command"))  # received, not handled yet
        begins.fn(*begins.args)  # type: ignore[misc]  # the start instant comes
        if stop_after_start:
            active.playback.began_at -= 1.0  # as if the stop came a second after the start
            agent.engine.stop(bid)
        drained = asyncio.get_running_loop().create_future()
        queue.submit(lambda: drained.set_result(None), later=True)
        await asyncio.wait_for(drained, 5)
        agent.engine.close()

    asyncio.run(scenario())
    return [e for e in order if e != "acknowledged"]


def test_in_a_fleet_a_start_is_reported_after_the_commands_already_received(tmp_path: Path) -> None:
    """At the start instant the output begins; the `started` report waits behind commands that wait to be handled."""
    assert _start_with_a_command_waiting(tmp_path, "8", stop_after_start=False) == ["command", "started"]


def test_in_a_fleet_a_play_stopped_before_its_start_report_left_reports_started_then_stopped(tmp_path: Path) -> None:
    """The start instant passed, its report waits in the queue, a stop comes: `started` still precedes `stopped`."""
    assert _start_with_a_command_waiting(tmp_path, "9", stop_after_start=True) == ["started", "stopped", "command"]


def test_in_a_fleet_an_acknowledgement_whose_hold_ends_after_the_start_rides_in_the_queued_started(
    tmp_path: Path,
) -> None:
    """The start instant came and `started` waits behind received commands; then the acknowledgement's hold ends.

    Its release waits in the queue too, behind `started`, which takes it in: one receipt per speaker, not two.
    """
    config, pcm, _payload = _fleet_speaker_and_play(tmp_path, 0.5, "10")
    client = CapturingClient()

    async def scenario() -> None:
        queue = WorkQueue(chunk=10)
        agent = Agent(config, output=create_output("null"), store=MemoryStore(), work_queue=queue, pcm=pcm)
        agent.client = client  # type: ignore[assignment]
        agent.handle_command(command_topic_for_region("p", "1"), _signed_play(config, 0.5, "10", region_wide=True))
        assert agent._held, "a region-wide play starting soon: its acknowledgement is held"
        active = agent.engine.active
        assert active is not None
        (begins,) = active.timers
        queue.submit(lambda: None)  # a received command, not handled yet
        begins.fn(*begins.args)  # type: ignore[misc]  # the start instant comes: `started` is queued
        for key in list(agent._held):
            agent._release(key)  # then the hold ends
        drained = asyncio.get_running_loop().create_future()
        queue.submit(lambda: drained.set_result(None), later=True)
        await asyncio.wait_for(drained, 5)
        agent.engine.close()

    asyncio.run(scenario())
    assert [r["event"] for r in client.sent] == ["started"]
    assert "acknowledged_at" in client.sent[0]["detail"]  # type: ignore[operator]


def _fleet_agent_noting_reports(
    config: AgentConfig, pcm: PcmCache, events: list[tuple[str, str | None]]
) -> tuple[Agent, Callable[[], Awaitable[None]]]:
    """A fleet speaker (in a running loop) whose reports are noted as (event, broadcast id), and a queue drain."""
    queue = WorkQueue(chunk=10)
    agent = Agent(config, output=create_output("null"), store=MemoryStore(), work_queue=queue, pcm=pcm)
    report = agent.report
    agent.report = lambda event, *a, **k: (  # type: ignore[method-assign]
        events.append((event, a[0].broadcast_id if a else k.get("broadcast_id"))),
        report(event, *a, **k),
    )[1]

    async def drain() -> None:
        drained = asyncio.get_running_loop().create_future()
        queue.submit(lambda: drained.set_result(None), later=True)
        await asyncio.wait_for(drained, 5)

    return agent, drain


def test_in_a_fleet_a_preempting_play_ends_the_play_it_cuts_off_at_its_start_not_through_the_queue(
    tmp_path: Path,
) -> None:
    """An emergency cuts off a normal play; the normal play's own end falls while the queue is still busy.

    Were the emergency's begin queued, the normal play's end timer would run first and report it `finished`,
    played in full; it was cut off, and must be reported `preempted` at the emergency's start instant.
    """
    config, pcm, _payload = _fleet_speaker_and_play(tmp_path, 0.2, "11")
    events: list[tuple[str, str | None]] = []

    async def scenario() -> None:
        agent, drain = _fleet_agent_noting_reports(config, pcm, events)
        agent.handle_command(agent.own_topic, _signed_play(config, 0.2, "normal", priority="normal"))
        normal = agent.engine.active
        assert normal is not None
        (begins,) = normal.timers
        begins.fn(*begins.args)  # type: ignore[misc]
        await drain()
        (_begins, ends) = normal.timers  # its natural end, a quarter second after its start
        agent.handle_command(agent.own_topic, _signed_play(config, 0.3, "alert", seq=2))
        alert = agent.engine.active
        assert alert is not None
        assert alert.preempts is not None
        assert alert.preempts[0] is normal
        assert agent.work_queue is not None
        agent.work_queue.submit(lambda: events.append(("command", None)))  # received, not handled yet
        (alert_begins,) = alert.timers
        alert_begins.fn(*alert_begins.args)  # type: ignore[misc]  # the emergency's start instant
        if not ends.cancelled():
            ends.fn(*ends.args)  # type: ignore[misc]  # the normal play's end comes before the queue is through
        await drain()
        agent.engine.close()

    asyncio.run(scenario())
    played = [e for e in events if e[0] != "acknowledged"]
    assert played == [("started", "normal"), ("preempted", "normal"), ("started", "alert"), ("command", None)]


def test_in_a_fleet_the_play_queued_behind_one_that_ends_starts_before_the_end_is_reported(tmp_path: Path) -> None:
    """Tone then speech: at the tone's end the speech is started at once, its `finished` waits in the queue.

    Ten thousand simulated speakers share one timer run at that instant; each real speaker switches on its
    own processor. The report keeps its place: `finished` still precedes the speech's `started`.
    """
    config, pcm, _payload = _fleet_speaker_and_play(tmp_path, 0.8, "tone")
    events: list[tuple[str, str | None]] = []

    async def scenario() -> None:
        agent, drain = _fleet_agent_noting_reports(config, pcm, events)
        # armed at once (a fleet arms what starts within 1 s), and its own timers stay well after the test's steps
        agent.handle_command(agent.own_topic, _signed_play(config, 0.8, "tone"))
        agent.handle_command(agent.own_topic, _signed_play(config, 0.85, "speech", seq=2))
        tone = agent.engine.active
        assert tone is not None
        assert tone.item.broadcast_id == "tone"
        (begins,) = tone.timers
        begins.fn(*begins.args)  # type: ignore[misc]
        await drain()
        (_begins, ends) = tone.timers
        events.clear()
        ends.fn(*ends.args)  # type: ignore[misc]  # the tone's end
        speech = agent.engine.active
        assert speech is not None
        assert speech.item.broadcast_id == "speech", "started at the tone's end"
        assert events == [], "the tone's `finished` waits in the queue"
        (speech_begins,) = speech.timers
        speech_begins.fn(*speech_begins.args)  # type: ignore[misc]
        await drain()
        agent.engine.close()

    asyncio.run(scenario())
    assert [e for e in events if e[0] != "acknowledged"] == [("finished", "tone"), ("started", "speech")]


def test_a_play_armed_to_follow_is_saved_as_queued_and_restored_to_the_queue(tmp_path: Path) -> None:
    """Armed, it has not begun: a crash or a stop before the instant must not lose it or count it as played."""
    config = AgentConfig(speaker_id="q-3", broker_url="mqtt://127.0.0.1:1", username=None, password=None,
                         topic_prefix="p", regions=["1"],
                         server_keys=[KeyPair.generate().public_b64()], state_dir=tmp_path / "s",
                         cache_dir=tmp_path / "c")  # fmt: skip
    follower = PlayItem(play_id="c-2", command_id="c-2", broadcast_id="2", priority="emergency",
                        media_url="http://m/2", sha256="b" * 64, duration_ms=1000, start_at=time.time(),
                        expires_at=time.time() + 60, volume=None, repeat=1, repeat_gap_ms=0, seq=2,
                        source="command")  # fmt: skip
    agent = Agent(config, output=create_output("null"), store=MemoryStore())
    agent.planner.after = follower
    saved = persist.snapshot(agent)
    assert [p["play_id"] for p in saved["pending"]] == ["c-2"]
    again = Agent(config, output=create_output("null"), store=MemoryStore())
    persist.restore(again, saved)
    assert list(again.planner.pending) == ["c-2"]
    assert "2" not in again.done


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "dropped"])
def test_a_snapshot_keeps_or_drops_a_schedule_play_armed_to_follow_like_a_queued_one(
    tmp_path: Path, kept: bool
) -> None:
    """Armed to follow the play in progress, a schedule item is still the snapshot's to keep (once) or drop."""
    config = AgentConfig(speaker_id="q-4", broker_url="mqtt://127.0.0.1:1", username=None, password=None,
                         topic_prefix="p", regions=["1"],
                         server_keys=[KeyPair.generate().public_b64()], state_dir=tmp_path / "s",
                         cache_dir=tmp_path / "c")  # fmt: skip
    now = time.time()
    play = Play(broadcast_id="7", priority="normal", media_url="http://127.0.0.1:1/m", sha256="c" * 64,
                duration_ms=1000, start_at=now + 30, expires_at=now + 90)  # fmt: skip
    armed = PlayItem.from_play(play, play_id="schedule:i-1", command_id="i-1", seq=1, default_expiry=now + 90,
                               source="schedule")  # fmt: skip

    async def scenario() -> None:
        agent = Agent(config, output=create_output("null"), store=MemoryStore())
        agent.planner.after = armed
        agent.engine.following = Active(armed, Playback(now + 30, 1.0), 60)
        items = (ScheduledPlay(item_id="i-1", play=play),) if kept else ()
        snapshot = ScheduleSnapshot(snapshot_id="s-2", generated_at=now, valid_until=now + 3600, items=items)
        signed = SignedCommand(id="c-9", seq=2, issued_at=now, expires_at=now + 3600, targets=("1",),
                               command=snapshot, key_id="k")  # fmt: skip
        agent._schedule(signed, snapshot)
        assert agent.engine.following is None
        assert agent.planner.after is None
        assert list(agent.planner.pending) == (["schedule:i-1"] if kept else [])
        agent.engine.close()

    asyncio.run(scenario())


def test_an_agent_stopped_while_a_play_is_armed_to_follow_saves_that_play_as_queued(tmp_path: Path) -> None:
    """Stopping ends the play in progress; the armed one has not begun, so it must be kept for the restart."""
    config = AgentConfig(speaker_id="q-5", broker_url="mqtt://127.0.0.1:1", username=None, password=None,
                         topic_prefix="p", regions=["1"],
                         server_keys=[KeyPair.generate().public_b64()], state_dir=tmp_path / "s",
                         cache_dir=tmp_path / "c")  # fmt: skip
    now = time.time()

    def play(broadcast_id: str) -> PlayItem:
        return PlayItem(play_id=f"c-{broadcast_id}", command_id=f"c-{broadcast_id}", broadcast_id=broadcast_id,
                        priority="emergency", media_url="http://m", sha256=broadcast_id * 64, duration_ms=1000,
                        start_at=now, expires_at=now + 60, volume=None, repeat=1, repeat_gap_ms=0, seq=1,
                        source="command")  # fmt: skip

    async def scenario() -> dict[str, Any]:
        agent = Agent(config, output=create_output("null"), store=MemoryStore())
        tone, speech = play("1"), play("2")
        agent.planner.current, agent.planner.after = tone, speech
        agent.engine.active = Active(tone, Playback(now, 2.0), 80)
        agent.engine.following = Active(speech, Playback(now + 2, 1.0), 80)
        await agent.stop()
        return persist.snapshot(agent)

    saved = asyncio.run(scenario())
    assert [p["play_id"] for p in saved["pending"]] == ["c-2"]
    assert saved["current"] is None
