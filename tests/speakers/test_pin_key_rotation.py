"""Pin: a speaker offline while the server rotates its key plays the new key's commands once it is back.

Brokers queue QoS 1 messages for an offline persistent session only when it belongs to an account (amqtt keeps
nothing for anonymous sessions), so the embedded broker here runs as in production: with a password file and
ACL, every speaker and the server on their own accounts.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from speakers.broker import EmbeddedBroker
from speakers.mosquitto import SpeakerAccess, write_mosquitto_files
from speakers.protocol import Ping, Play, Target
from speakers.server import key_announcement
from speakers.signing import KeyPair
from speakers.transport import connect
from tests.requires import need

from . import conftest
from .conftest import COUNTY, GRID, MQTT_URL, REGIONS, AgentRunner, Clip, LinkProxy, ServerSide

SERVER_USER, SERVER_PASSWORD = "broadcast-server", "server-secret-1"
NAMES = ("present", "away")


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path, topic_prefix: str) -> Iterator[str]:
    """The embedded broker with accounts for the server and each speaker, or the external Mosquitto."""
    if request.param == "mosquitto":
        need(MQTT_URL, "external MQTT broker: set BROADCAST_TEST_MQTT_URL=mqtt://host:port")
        assert MQTT_URL
        yield MQTT_URL
        return
    ids = [f"{name}-{topic_prefix}" for name in NAMES]
    accounts = [SpeakerAccess(i, i, tuple(REGIONS), password=f"pw-{i}") for i in ids]
    write_mosquitto_files(tmp_path / "broker", accounts, SERVER_USER, SERVER_PASSWORD, prefix=topic_prefix)
    broker = EmbeddedBroker(password_file=tmp_path / "broker" / "passwd", acl_file=tmp_path / "broker" / "acl")
    broker.start()
    yield broker.url
    broker.close()


@pytest.fixture
def server(
    request: pytest.FixtureRequest, broker_url: str, topic_prefix: str, server_key: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerSide]:
    """The server library, on its own account where the broker has accounts."""
    if broker_url != MQTT_URL:
        monkeypatch.setattr(
            conftest, "connect", functools.partial(connect, username=SERVER_USER, password=SERVER_PASSWORD)
        )
    side = ServerSide(broker_url, topic_prefix, server_key)
    yield side
    side.close()


def account(broker_url: str, name: str, topic_prefix: str) -> dict[str, str | None]:
    """make_agent overrides for a speaker's own account (none on the anonymous external broker)."""
    speaker_id = f"{name}-{topic_prefix}"
    if broker_url == MQTT_URL:
        return {}
    return {"username": speaker_id, "password": f"pw-{speaker_id}"}


def play(clip: Clip, media: Any, bid: str, start_in: float = 0.5) -> Play:
    """A routine play of `clip` starting shortly."""
    return Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                duration_ms=clip.duration_ms, start_at=time.time() + start_in)  # fmt: skip


def starts(agent: AgentRunner) -> list[str]:
    """Broadcast ids the agent started, in order, from its sink's timeline."""
    return [e["broadcast_id"] for e in agent.timeline() if e["event"] == "started"]


def test_a_speaker_away_during_rotation_learns_the_key_and_plays_once_back(
    server: ServerSide,
    make_agent: Callable[..., AgentRunner],
    link: LinkProxy,
    clips: dict[str, Clip],
    media: Any,
    broker_url: str,
    topic_prefix: str,
) -> None:
    present = make_agent("present", **account(broker_url, "present", topic_prefix))
    away = make_agent(
        "away",
        broker_url=link.url,
        clean_session=False,
        reconnect_max_s=0.5,
        **account(broker_url, "away", topic_prefix),
    )
    server.online(present.id)
    server.online(away.id)
    here = [Target.region(GRID)]
    # Positive first: both play a command under the current key.
    server.send(play(clips["tiny"], media, "before"), here)
    for agent in (present, away):
        server.receipt(agent.id, "finished", broadcast_id="before")

    link.down()
    server.states.wait(lambda s: s.speaker_id == away.id and not s.online)  # the broker saw it go (its will)
    old, new = server.key, KeyPair.generate()
    server.send(key_announcement(new, retire_previous_at=time.time() + 0.5), [Target.region(COUNTY)])
    server.receipt(present.id, "acknowledged", detail={"key_id": new.key_id})
    server.publisher.signer = new
    server.responder.signer = new
    server.send(play(clips["tiny"], media, "while-away"), here, expires_in=300)
    server.receipt(present.id, "finished", broadcast_id="while-away")
    assert not server.events(away.id) or all(r.broadcast_id != "while-away" for r in server.events(away.id))

    back = time.time()
    link.up()
    server.states.wait(lambda s: s.speaker_id == away.id and s.online and s.at > back, timeout=20)
    assert server.receipt(away.id, "acknowledged", detail={"key_id": new.key_id}, timeout=20)
    server.receipt(away.id, "finished", broadcast_id="while-away", timeout=20)
    server.send(play(clips["tiny"], media, "after"), here)
    server.receipt(away.id, "finished", broadcast_id="after")
    assert starts(away) == ["before", "while-away", "after"], "each command played exactly once"
    assert not server.receipts.matching(lambda r: r.speaker_id == away.id and r.event == "rejected")

    # The old key is retired on the returning speaker too: a command under it is refused.
    server.publisher.signer = old
    server.send(Ping(), [Target.speaker(away.id)])
    assert server.receipt(away.id, "rejected").reason == "retired_key"
