"""The fleet's shared timer heap and fair work queue, and the two Ed25519 verifiers agreeing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from speakers.agent.core import Agent
from speakers.agent.outputs import create_output
from speakers.agent.store import MemoryStore
from speakers.agent.timers import Timers
from speakers.agent.workqueue import WorkQueue
from speakers.config import AgentConfig
from speakers.signing import COMMAND_CONTEXT, KeyPair
from speakers.sodium import sodium_verify


def test_timers_fire_in_order_on_time_and_can_be_cancelled() -> None:
    fired: list[tuple[str, float]] = []

    async def scenario() -> None:
        timers = Timers()
        start = time.time()
        for name, delay in (("c", 0.15), ("a", 0.05), ("b", 0.10), ("never", 0.12)):
            handle = timers.call_later(delay, lambda n=name: fired.append((n, time.time() - start)))
            if name == "never":
                handle.cancel()
        timers.call_at(start - 1, lambda: fired.append(("past", time.time() - start)))
        await asyncio.sleep(0.25)
        timers.close()

    asyncio.run(scenario())
    assert [n for n, _ in fired] == ["past", "a", "b", "c"]
    for (_name, at), planned in zip(fired[1:], (0.05, 0.10, 0.15), strict=True):
        assert planned - 0.002 <= at < planned + 0.03


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
