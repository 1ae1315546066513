"""The `regions` command: a moved speaker follows its new grid by itself, verified, persisted, on a real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speakers.acl import server_rules, speaker_rules
from speakers.broker import EmbeddedBroker
from speakers.config import AgentConfig, check_regions
from speakers.errors import SpeakerError
from speakers.protocol import Ping, Play, Regions, Target, check_command, command_topic_for_region, encode_command
from speakers.schema import SchemaError
from speakers.signing import KeyPair
from tests.conftest import wait_for

from .conftest import COUNTY, GRID, REGIONS, AgentRunner, Clip, ServerSide

NEW_TOWNSHIP = "421224205000"
NEW_VILLAGE = "421224205201"
NEW_GRID = "42122420520101"
NEW_REGIONS = [NEW_GRID, NEW_VILLAGE, NEW_TOWNSHIP, COUNTY]


def _play(clip: Clip, media: Any, bid: str) -> Play:
    start = time.time() + 0.5
    return Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=start, expires_at=start + 60)  # fmt: skip


def _reaches(server: ServerSide, agent: AgentRunner, clip: Clip, media: Any, grid: str, other: str) -> None:
    """A play to `grid` is accepted; one to `other`, published first, never reaches the speaker."""
    stray = server.send(_play(clip, media, f"stray-{uuid.uuid4().hex[:6]}"), [Target.region(other)])
    wanted = server.send(_play(clip, media, f"here-{uuid.uuid4().hex[:6]}"), [Target.region(grid)])
    # region-wide and imminent: its acknowledgement may ride in its `started` receipt
    server.receipt(agent.id, "started", command_id=wanted)
    # a ping on the speaker's own topic, sent after both, is the barrier: the stray had its chance
    ping = server.send(Ping(), [Target.speaker(agent.id)])
    server.receipt(agent.id, "pong", command_id=ping)
    assert server.receipts.matching(lambda r: r.command_id == stray) == []


def _move(server: ServerSide, agent: AgentRunner, codes: list[str], **options: Any) -> str:
    return server.send(Regions(tuple(codes)), [Target.speaker(agent.id)], **options)


def test_chain_rules() -> None:
    assert check_regions(NEW_REGIONS) == NEW_REGIONS  # the positive path
    check_command("regions", {"regions": NEW_REGIONS})
    for bad in (
        [NEW_GRID],  # no ancestors
        [NEW_VILLAGE, NEW_TOWNSHIP, COUNTY],  # not starting at a grid
        [NEW_GRID, "421224100201", NEW_TOWNSHIP, COUNTY],  # a village of another township
        [NEW_GRID, NEW_TOWNSHIP, NEW_VILLAGE, COUNTY],  # out of order
        [NEW_GRID, NEW_GRID, COUNTY],  # repeated
    ):
        with pytest.raises(SpeakerError) as exc:
            check_regions(bad)
        assert "区域链不合法" in exc.value.zh
        with pytest.raises(SchemaError):
            check_command("regions", {"regions": bad})
    with pytest.raises(SchemaError):
        check_command("regions", {"regions": [NEW_GRID, "x/y"]})


def test_a_signed_regions_command_moves_the_subscriptions(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent("mover")
    server.online(agent.id)
    tiny = clips["tiny"]
    _reaches(server, agent, tiny, media, GRID, NEW_GRID)  # before: the old grid only

    moved = _move(server, agent, NEW_REGIONS)
    ack = server.receipt(agent.id, "acknowledged", command_id=moved)
    assert ack.detail["grid"] == NEW_GRID
    assert ack.detail["regions"] == NEW_REGIONS
    _reaches(server, agent, tiny, media, NEW_GRID, GRID)  # after: the new grid only
    _reaches(server, agent, tiny, media, NEW_TOWNSHIP, REGIONS[2])  # ancestors follow too
    # a command for the old grid that still reaches the speaker (on its own topic) is not addressed to it
    late = server.send(_play(tiny, media, "old-grid"), [Target.region(GRID)])
    server.send(_play(tiny, media, "own-topic"), [Target.speaker(agent.id)])
    server.receipt(agent.id, "acknowledged", broadcast_id="own-topic")
    assert server.receipts.matching(lambda r: r.command_id == late) == []  # published to the old topic: unheard
    assert agent.call(lambda: agent.agent.config.regions) == NEW_REGIONS  # type: ignore[union-attr]


def test_forged_malformed_stale_and_region_wide_moves_change_nothing(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent("stay")
    server.online(agent.id)
    tiny = clips["tiny"]
    # forged: signed by a key the speaker does not trust
    forger = ServerSide(server.url, server.prefix, KeyPair.generate())
    try:
        forged = _move(forger, agent, NEW_REGIONS)
        assert server.receipt(agent.id, "rejected", command_id=forged).reason in ("unknown_key", "bad_signature")
    finally:
        forger.close()
    # malformed: signed, but not a chain (the publisher's own check is bypassed by signing a raw body)
    bad = _raw_regions(server, agent.id, [NEW_VILLAGE, NEW_GRID, COUNTY])
    assert server.receipt(agent.id, "rejected", command_id=bad).reason == "malformed"
    # region-wide: a whole grid must never be moved by one publish
    wide = server.send(Regions(tuple(NEW_REGIONS)), [Target.region(GRID)])
    assert server.receipt(agent.id, "refused", command_id=wide).reason == "not_own_topic"
    _reaches(server, agent, tiny, media, GRID, NEW_GRID)  # still in the old grid
    # stale: an older move arriving after a newer one
    newer = _move(server, agent, REGIONS, seq=server.seq + 10)
    server.receipt(agent.id, "acknowledged", command_id=newer)
    older = _move(server, agent, NEW_REGIONS, seq=server.seq + 5)
    assert server.receipt(agent.id, "refused", command_id=older).reason == "stale_regions"
    server.seq += 10
    _reaches(server, agent, tiny, media, GRID, NEW_GRID)


def _raw_regions(server: ServerSide, speaker_id: str, codes: list[str]) -> str:
    """Sign and publish a regions command whose body breaks the chain rule."""

    class Unchecked(Regions):
        pass

    server.seq += 1
    command_id = uuid.uuid4().hex
    now = time.time()
    payload = encode_command(
        Unchecked(tuple(codes)), signer=server.key, seq=server.seq, command_id=command_id,
        targets=[Target.speaker(speaker_id)], issued_at=now, expires_at=now + 60,
    )  # fmt: skip
    server.transport.publish(Target.speaker(speaker_id).topic(server.prefix), payload, qos=1)
    return command_id


def _online_after(server: ServerSide, speaker_id: str, since: float) -> None:
    server.states.wait(lambda s: s.speaker_id == speaker_id and s.online and s.at >= since)


def test_the_new_regions_survive_a_restart_and_a_new_configuration_wins(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent("keeper")
    server.online(agent.id)
    moved = _move(server, agent, NEW_REGIONS)
    server.receipt(agent.id, "acknowledged", command_id=moved)
    agent.stop()
    since = time.time()
    again = make_agent("keeper")  # the same configuration file and state folder, nothing downloaded
    _online_after(server, again.id, since)
    _reaches(server, again, clips["tiny"], media, NEW_GRID, GRID)
    # the stale check survives too: a replay of an older move is refused
    older = _move(server, again, REGIONS, seq=server.seq - 50)
    assert server.receipt(again.id, "refused", command_id=older).reason == "stale_regions"
    again.stop()
    # a configuration downloaded later (with its own regions) overrides what an older move said
    grid2 = GRID[:-2] + "02"
    since = time.time()
    refreshed = make_agent("keeper", regions=[grid2, *REGIONS[1:]])
    _online_after(server, refreshed.id, since)
    assert refreshed.call(lambda: refreshed.agent.config.regions) == [grid2, *REGIONS[1:]]  # type: ignore[union-attr]
    _reaches(server, refreshed, clips["tiny"], media, grid2, NEW_GRID)


def test_a_move_that_outruns_the_broker_acl_subscribes_once_the_acl_follows(
    topic_prefix: str, server_key: KeyPair, tmp_path: Path, clips: dict[str, Clip], media: Any
) -> None:
    speaker_id = f"acl-{topic_prefix}"

    def rules(regions: list[str]) -> dict[str, dict[str, list[str]]]:
        own, srv = speaker_rules(topic_prefix, speaker_id, regions), server_rules(topic_prefix)
        return {"anonymous": {k: own[k] + srv[k] for k in ("read", "write")}}  # speaker and server, no accounts

    broker = EmbeddedBroker(acl=rules(REGIONS))
    broker.start()
    server = ServerSide(broker.url, topic_prefix, server_key)
    config = AgentConfig(
        speaker_id=speaker_id, broker_url=broker.url, username=None, password=None, topic_prefix=topic_prefix,
        regions=list(REGIONS), server_keys=[server_key.public_b64()], state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache", clean_session=True,
    )  # fmt: skip
    runner = AgentRunner(config, tmp_path / "sink", time_sync_spacing_s=0.2).start()
    new_topic = command_topic_for_region(topic_prefix, NEW_GRID)
    try:
        server.online(speaker_id)
        _reaches(server, runner, clips["tiny"], media, GRID, NEW_GRID)
        moved = _move(server, runner, NEW_REGIONS)
        server.receipt(speaker_id, "acknowledged", command_id=moved)

        def refused() -> set[str]:
            return set(runner.call(lambda: runner.agent.client.refused))  # type: ignore[union-attr]

        wait_for(lambda: new_topic in refused(), "the broker to refuse the new grid (its ACL not rewritten yet)")
        broker.set_acl(rules(NEW_REGIONS))  # what the server's ACL rewrite does a moment later
        wait_for(lambda: not refused(), "the agent to ask again and be granted")
        _reaches(server, runner, clips["tiny"], media, NEW_GRID, GRID)
    finally:
        runner.stop()
        server.close()
        broker.close()
