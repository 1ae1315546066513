"""Key rotation: the next key is announced under the current one, persisted, and the old one retires."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from speakers.protocol import Ping, Play, Target
from speakers.server import CommandPublisher, key_announcement
from speakers.signing import KeyPair

from .conftest import GRID, AgentRunner, Clip, ServerSide


def test_rotation_is_accepted_persisted_and_retires_the_old_key(
    server: ServerSide, make_agent: Callable[..., AgentRunner], clips: dict[str, Clip], media: Any
) -> None:
    agent = make_agent("rot")
    server.online(agent.id)
    me = [Target.speaker(agent.id)]
    old, new, rogue = server.key, KeyPair.generate(), KeyPair.generate()
    retire_at = time.time() + 2.0
    server.send(key_announcement(new, retire_previous_at=retire_at), me)
    assert server.receipt(agent.id, "acknowledged", detail={"key_id": new.key_id})
    server.responder.signer = new  # time replies must move to the new key too

    def send_with(key: KeyPair, command: Any) -> None:
        server.publisher = CommandPublisher(server.transport, key, prefix=server.prefix)
        server.send(command, me)

    send_with(new, Ping())
    server.receipt(agent.id, "pong")
    send_with(old, Ping())  # a web worker that has not reloaded the key yet: still fine until retire_at
    server.receipts.wait(lambda r: r.speaker_id == agent.id and r.event == "pong", count=2)
    # only the current key may announce the next one
    send_with(old, key_announcement(rogue))
    assert server.receipt(agent.id, "rejected").reason == "wrong_key"
    time.sleep(max(0.0, retire_at - time.time()) + 0.1)
    send_with(old, Ping())
    assert server.receipts.wait(lambda r: r.event == "rejected" and r.reason == "retired_key")
    # a restart keeps the rotated keys although the config file still names only the old key
    agent.stop()
    restarted = time.time()
    again = make_agent("rot")
    server.states.wait(lambda s: s.speaker_id == again.id and s.online and s.at > restarted)
    clip = clips["tiny"]
    send_with(new, Play(broadcast_id="after-rotation", priority="normal", media_url=media.url(clip.name),
                        sha256=clip.sha256, duration_ms=clip.duration_ms, start_at=time.time() + 0.3))  # fmt: skip
    server.receipt(again.id, "finished", broadcast_id="after-rotation")
    send_with(old, Ping())
    rejected = server.receipts.wait(lambda r: r.event == "rejected" and r.reason == "retired_key", count=2)
    assert len(rejected) == 2
    send_with(rogue, Ping())
    assert server.receipts.wait(lambda r: r.event == "rejected" and r.reason == "unknown_key")
    assert GRID in again.config.regions
