"""Attacks on a running deployment: strangers, a speaker's stolen account, forged and replayed commands, rotation."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import exe, http, timeline, wait_for

pytestmark = pytest.mark.e2e
SPEAKER = "spk-42122410420101-1"
OTHER = "spk-42122410420101-2"
GRID = "42122410420101"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Deployment]:
    """`broadcast run` (embedded broker with accounts and ACLs) and one real agent; OTHER is provisioned only."""
    deployment = prepare(tmp_path, [SPEAKER, OTHER])
    try:
        deployment.start_server()
        deployment.start_agent(SPEAKER)
        deployment.wait_online(SPEAKER)
        yield deployment
    finally:
        deployment.stop()


def _password(stack: Deployment, speaker_id: str) -> str:
    return json.loads(stack.configs[speaker_id].read_text())["password"]


def _connects(url: str, **account: Any) -> bool:
    from speakers.transport import connect

    try:
        # a speaker account may only use its own id as client id
        client_id = account.get("username") or "intruder-" + secrets.token_hex(3)
        transport = connect(url, client_id=client_id, **account)
    except Exception:
        return False
    transport.close()
    return True


def _play(stack: Deployment, text: str, target: str = SPEAKER) -> tuple[dict[str, Any], int]:
    base, token = stack.base, stack.token
    clip = http("POST", base + "/api/v1/clips", token, {"text": text})[1]
    status, created = http("POST", base + "/api/v1/broadcasts", token, {"clip_id": clip["id"], "targets": [target]})
    assert status == 201, created
    return clip, created["id"]


def _wait_finished(stack: Deployment, broadcast_id: int) -> None:
    wait_for(lambda: stack.delivery(broadcast_id, SPEAKER)["state"] == "finished", 40, f"broadcast {broadcast_id}")


def test_strangers_and_wrong_accounts_cannot_use_the_broker(stack: Deployment) -> None:
    url = stack.broker
    assert _connects(url, username=OTHER, password=_password(stack, OTHER)), "positive first: a real account connects"
    assert not _connects(url)  # anonymous
    assert not _connects(url, username=SPEAKER, password="guessed-password")


def test_a_stolen_speaker_account_cannot_command_others(stack: Deployment) -> None:
    from speakers.transport import connect

    intruder = connect(stack.broker, client_id=OTHER, username=OTHER, password=_password(stack, OTHER))
    try:
        prefix = stack.prefix
        intruder.publish(f"{prefix}/cmd/speaker/{SPEAKER}", b'{"v": 1, "sig": "x", "body": "{}"}', qos=1)
        intruder.publish(f"{prefix}/receipt/{SPEAKER}", b'{"forged": true}', qos=1)  # returns on the PUBACK
    finally:
        intruder.close()
    # A barrier: a real command sent after the forged ones, played and reported back, proves the speaker and the
    # server handled everything published before it.
    _, real_id = _play(stack, "这是一条真实的通知。", SPEAKER)
    _wait_finished(stack, real_id)
    # The broker's ACL dropped both: the speaker saw no command to reject, the server no receipt.
    speakers = http("GET", stack.base + "/api/v1/speakers", stack.token)[1]["items"]
    assert next(s for s in speakers if s["id"] == SPEAKER)["rejected_count"] == 0
    assert [e["broadcast_id"] for e in timeline(stack.sink(SPEAKER)) if e["event"] == "started"] == [str(real_id)]


def _server_transport(stack: Deployment, name: str) -> Any:
    from speakers.transport import connect

    user, password = stack.platform.broker_account()
    return connect(stack.broker, client_id=name, username=user, password=password)


def test_forged_and_replayed_commands_are_refused_and_raised(stack: Deployment) -> None:
    """Someone with the server's broker password but not its signing key: nothing plays, the console shows it."""
    from speakers import protocol
    from speakers.messages import Play
    from speakers.signing import KeyPair
    from speakers.transport import connect

    # A neighbour's stolen account can read the grid's commands: that is how a command gets captured.
    captured: list[bytes] = []
    spy = connect(stack.broker, client_id=OTHER, username=OTHER, password=_password(stack, OTHER))
    spy.subscribe(f"{stack.prefix}/cmd/region/{GRID}", lambda m: captured.append(m.payload), qos=1)
    clip, real_id = _play(stack, "这是一条真实的通知。", GRID)
    _wait_finished(stack, real_id)
    wait_for(lambda: captured, 5, "the spy to capture the real command")
    attacker = _server_transport(stack, "attacker")
    try:
        forged = protocol.encode_command(
            Play(
                broadcast_id="666",
                priority="emergency",
                media_url="http://127.0.0.1:9/x.mp3",
                sha256=clip["sha256"],
                duration_ms=clip["duration_ms"],
                start_at=time.time() + 1,
            ),
            signer=KeyPair.generate(),
            seq=10**9,
            command_id=uuid.uuid4().hex,
            targets=[protocol.Target.speaker(SPEAKER)],
            issued_at=time.time(),
            expires_at=time.time() + 60,
        )
        attacker.publish(f"{stack.prefix}/cmd/speaker/{SPEAKER}", forged, qos=1)
        attacker.publish(f"{stack.prefix}/cmd/region/{GRID}", captured[0], qos=1)  # replay
    finally:
        attacker.close()
        spy.close()

    def raised() -> list[dict[str, Any]]:
        alarms = http("GET", stack.base + "/api/v1/alarms", stack.token)[1]["items"]
        return [a for a in alarms if a["speaker_id"] == SPEAKER and a["kind"] == "rejecting"]

    wait_for(raised, 20, "the rejections to reach the alarm list")
    speakers = http("GET", stack.base + "/api/v1/speakers", stack.token)[1]["items"]
    # The replayed envelope is identical to one already handled: a duplicate (docs/protocol.md), never played
    # again and not counted; the forged one is the rejection.
    assert next(s for s in speakers if s["id"] == SPEAKER)["rejected_count"] == 1
    started = [e for e in timeline(stack.sink(SPEAKER)) if e["event"] == "started"]
    assert [e["broadcast_id"] for e in started] == [str(real_id)]
    from sqlalchemy import select

    from broadcast.models import AuditEvent

    with stack.platform.db.transaction() as session:
        reasons = sorted(
            e.detail["reason"]
            for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "speaker.rejected_command"))
        )
    assert reasons == ["unknown_key"], reasons


def test_key_rotation_while_running(stack: Deployment) -> None:
    from speakers.signing import KeyPair

    _, first = _play(stack, "轮换之前。")
    _wait_finished(stack, first)
    old = KeyPair.load(stack.platform.signing_key_path).key_id
    result = subprocess.run(
        [exe("broadcast"), "keys", "rotate"], capture_output=True, text=True, env={**_env(), **stack.env}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    new = KeyPair.load(stack.platform.signing_key_path).key_id
    assert new != old
    assert new in result.stdout
    _, second = _play(stack, "轮换之后。")
    _wait_finished(stack, second)
    started = [e["broadcast_id"] for e in timeline(stack.sink(SPEAKER)) if e["event"] == "started"]
    assert started == [str(first), str(second)]


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
