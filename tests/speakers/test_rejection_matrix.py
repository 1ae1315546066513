"""Every forged, tampered, stale or misdirected command published to a real broker is rejected, with its
reason, by a real agent; two valid commands arriving in swapped order both play."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from speakers import protocol
from speakers.protocol import Play, Target
from speakers.signing import COMMAND_CONTEXT, KeyPair

from .conftest import GRID, TOWNSHIP, AgentRunner, Clip, ServerSide


def envelope(signer: KeyPair, body: str, *, kid: str | None = None, v: int = 1) -> bytes:
    sig = base64.b64encode(signer.sign(COMMAND_CONTEXT, body.encode())).decode()
    return protocol.dumps({"v": v, "kid": kid or signer.key_id, "sig": sig, "body": body}).encode()


def body(play: Play | dict, *, seq: int, targets: list[str], issued: float | None = None, expires: float | None = None,
         cid: str | None = None) -> str:  # fmt: skip
    issued = time.time() if issued is None else issued
    return protocol.dumps(
        {"v": 1, "type": "play", "id": cid or uuid.uuid4().hex, "seq": seq, "issued_at": issued,
         "expires_at": issued + 60 if expires is None else expires, "targets": targets,
         "cmd": play if isinstance(play, dict) else play.to_dict()}
    )  # fmt: skip


class Matrix:
    """Publishes crafted payloads at one agent and reads back the rejection reason."""

    def __init__(self, server: ServerSide, agent: AgentRunner, clip: Clip, media_url: str) -> None:
        self.server, self.agent = server, agent
        self.topic = Target.speaker(agent.id).topic(server.prefix)
        self.region_topic = Target.region(GRID).topic(server.prefix)
        self.play = Play(broadcast_id="b-x", priority="normal", media_url=media_url, sha256=clip.sha256,
                         duration_ms=clip.duration_ms, start_at=time.time())  # fmt: skip
        self.me = [f"speaker:{agent.id}"]

    def rejected(self) -> list:
        return self.server.receipts.matching(lambda r: r.speaker_id == self.agent.id and r.event == "rejected")

    def reason_for(self, payload: bytes, topic: str | None = None) -> str:
        before = len(self.rejected())
        self.server.transport.publish(topic or self.topic, payload, qos=1)
        found = self.server.receipts.wait(
            lambda r: r.speaker_id == self.agent.id and r.event == "rejected", count=before + 1
        )
        return found[before].reason

    def valid(self, seq: int, *, cid: str | None = None, targets: list[str] | None = None, **play: object) -> bytes:
        p = Play(**{**self.play.to_dict(), **play})  # type: ignore[arg-type]
        return envelope(self.server.key, body(p, seq=seq, targets=targets or self.me, cid=cid))


def cases(m: Matrix) -> dict[str, tuple[Callable[[], bytes], str]]:
    key = m.server.key
    stranger = KeyPair.generate()

    def tampered() -> bytes:
        data = json.loads(m.valid(5001))
        data["body"] = data["body"].replace('"priority":"normal"', '"priority":"emergency"')
        assert "emergency" in data["body"]
        return protocol.dumps(data).encode()

    def mine(seq: int, **kw: Any) -> str:
        return body(m.play, seq=seq, targets=m.me, **kw)

    def empty_signature() -> bytes:
        return protocol.dumps({"v": 1, "kid": key.key_id, "sig": "", "body": mine(5005)}).encode()

    def breaks_schema() -> bytes:
        return envelope(key, body({**m.play.to_dict(), "priority": "loudest"}, seq=5006, targets=m.me))

    def expired() -> bytes:
        return envelope(key, mine(5009, issued=time.time() - 120, expires=time.time() - 60))

    return {
        "forged with the server's key id": (lambda: envelope(stranger, mine(5002), kid=key.key_id), "bad_signature"),
        "tampered after signing": (tampered, "bad_signature"),
        "signed by an unknown key": (lambda: envelope(stranger, mine(5003)), "unknown_key"),
        "unsigned bare command": (lambda: mine(5004).encode(), "unsigned"),
        "envelope with empty signature": (empty_signature, "unsigned"),
        "not JSON": (lambda: b"\xff\xfe garbage", "malformed"),
        "signed but breaks the schema": (breaks_schema, "malformed"),
        "a title over 200 characters": (
            lambda: envelope(key, body({**m.play.to_dict(), "title": "长" * 201}, seq=5011, targets=m.me)),
            "malformed",
        ),
        "unknown protocol version": (lambda: envelope(key, mine(5007), v=2), "unsupported_version"),
        "addressed to another region": (
            lambda: envelope(key, body(m.play, seq=5008, targets=["region:999999"])),
            "not_addressed",
        ),
        "expired": (expired, "expired"),
        "issued an hour ahead": (lambda: envelope(key, mine(5010, issued=time.time() + 3600)), "not_yet_valid"),
        "same sequence, new id": (lambda: m.valid(5000, cid="other-id"), "replayed"),
        "older than the window": (lambda: m.valid(5000 - 1024 - 1), "out_of_window"),
    }


def test_rejection_matrix(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media
) -> None:  # type: ignore[no-untyped-def]
    agent = make_agent()
    server.online(agent.id)
    m = Matrix(server, agent, clips["tiny"], media.url("tiny.mp3"))
    table = cases(m)
    server.transport.publish(m.topic, m.valid(5000, cid="good-one"), qos=1)
    server.receipt(agent.id, "acknowledged", command_id="good-one")
    results = {name: m.reason_for(make()) for name, (make, _expected) in table.items()}
    assert results == {name: expected for name, (_make, expected) in table.items()}
    # every rejection names the command and the broadcast whenever the message lets them be read
    unreadable = [r for r in m.rejected() if r.command_id is None or r.broadcast_id != "b-x"]
    assert [r.reason for r in unreadable] == ["malformed"], "only the non-JSON message names nothing"
    # A region command for another region, re-published onto this speaker's region topic, is refused too.
    foreign = envelope(server.key, body(m.play, seq=6000, targets=[f"region:{TOWNSHIP}9"]))
    assert m.reason_for(foreign, m.region_topic) == "not_addressed"
    rejected_ids = {r.command_id for r in m.rejected()}
    started = [e for e in agent.timeline() if e["event"] == "started"]
    assert [e["command_id"] for e in started] == ["good-one"], "nothing rejected was played"
    assert "good-one" not in rejected_ids - {"good-one"}
    server.seq = 9000  # the server's sequence moved on meanwhile
    server.send(protocol.Ping(), [Target.speaker(agent.id)])
    server.receipt(agent.id, "pong")
    server.states.wait(lambda s: s.speaker_id == agent.id and s.rejected_count == len(table) + 1)


def test_swapped_order_both_play(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media
) -> None:  # type: ignore[no-untyped-def]
    agent = make_agent()
    server.online(agent.id)
    clip = clips["tiny"]
    start = time.time() + 0.6

    def play(bid: str) -> Play:
        return Play(broadcast_id=bid, priority="normal", media_url=media.url(clip.name), sha256=clip.sha256,
                    duration_ms=clip.duration_ms, start_at=start)  # fmt: skip

    # two web workers took sequences 41 and 42; 42's publish reaches the broker first
    server.send(play("second-worker"), [Target.region(TOWNSHIP)], seq=42, command_id="c42")
    server.send(play("first-worker"), [Target.region(TOWNSHIP)], seq=41, command_id="c41")
    for cid in ("c41", "c42"):
        server.receipt(agent.id, "finished", command_id=cid, timeout=10)
    assert not server.receipts.matching(lambda r: r.event == "rejected")
    starts = sorted((e["at"], e["command_id"]) for e in agent.timeline() if e["event"] == "started")
    assert [c for _t, c in starts] == ["c41", "c42"], "equal priority: the lower sequence first, the other queued"


def test_resent_command_is_a_duplicate_not_a_replay(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media
) -> None:  # type: ignore[no-untyped-def]
    agent = make_agent()
    server.online(agent.id)
    m = Matrix(server, agent, clips["tiny"], media.url("tiny.mp3"))
    payload = m.valid(8000, cid="sent-twice", start_at=time.time() + 0.3)
    server.transport.publish(m.topic, payload, qos=1)
    server.receipt(agent.id, "finished", command_id="sent-twice")
    assert len(server.receipts.matching(lambda r: r.event == "finished")) == 1
    server.transport.publish(m.topic, payload, qos=1)  # the server did not hear back and re-sends it
    server.receipts.wait(lambda r: r.event == "finished" and r.command_id == "sent-twice", count=2)
    # and a forged twin (same id, another body) is still a replay
    assert m.reason_for(m.valid(8001, cid="sent-twice")) == "replayed"
    started = [e for e in agent.timeline() if e["event"] == "started"]
    assert [e["command_id"] for e in started] == ["sent-twice"], "played once"
    server.seq = 9000
    server.send(protocol.Ping(), [Target.speaker(agent.id)])
    server.receipt(agent.id, "pong")
    server.states.wait(lambda s: s.speaker_id == agent.id and s.rejected_count == 1)  # only the forged twin


@pytest.mark.parametrize("reason", ["replayed"])
def test_replay_after_restart_is_still_refused(
    reason: str,
    server: ServerSide,
    make_agent: Callable[..., AgentRunner],
    clips: dict[str, Clip],
    media,  # type: ignore[no-untyped-def]
) -> None:
    agent = make_agent("restart")
    server.online(agent.id)
    m = Matrix(server, agent, clips["tiny"], media.url("tiny.mp3"))
    payload = m.valid(7000, cid="once")
    server.transport.publish(m.topic, payload, qos=1)
    server.receipt(agent.id, "acknowledged", command_id="once")
    agent.stop()
    restarted = time.time()
    again = make_agent("restart")
    server.states.wait(lambda s: s.speaker_id == again.id and s.online and s.at > restarted)
    m.agent = again
    before = len(server.receipts.matching(lambda r: r.command_id == "once"))
    server.transport.publish(m.topic, payload, qos=1)  # the identical command: a duplicate, answered again
    server.receipts.wait(lambda r: r.command_id == "once", count=before + 1)
    assert not m.rejected(), "a duplicate raises no alarm, also after a restart"
    assert m.reason_for(m.valid(7000, cid="twin")) == reason, "anti-replay state survives a restart"
