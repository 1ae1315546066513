"""End to end: a speaker moved to another grid obeys only its new grid, on a real agent and the embedded broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from speakers.protocol import command_topic_for_region, command_topic_for_speaker
from tests.e2e.deployment import Deployment, prepare
from tests.e2e.procs import http, timeline, wait_for

pytestmark = pytest.mark.e2e

SPEAKER = "spk-42122410420101-1"  # 黄沙村第一网格
OLD_GRID = "42122410420101"
OLD_VILLAGE = "421224104201"
NEW_GRID = "42122420520101"  # 大路村第一网格, another township
NEW_CHAIN = ["421224205201", "421224205000", "421224000000"]  # its village, township and county


@pytest.fixture
def deployment(tmp_path: Path, sqlite_url: str) -> Iterator[Deployment]:
    """`broadcast run` with its embedded broker, the demo county and one provisioned real agent."""
    deployment = prepare(tmp_path, [SPEAKER], DATABASE_URL=sqlite_url, COMMAND_TTL_S="8")
    try:
        deployment.start_server()
        yield deployment
    finally:
        deployment.stop()


def _suback(broker: str, user: str, password: str, topics: list[str]) -> list[bool]:
    """Subscribe as `user` (its own client id, a clean session) and return which filters the broker granted."""
    host, port = broker.removeprefix("mqtt://").split(":")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, clean_session=True)
    client.username_pw_set(user, password)
    granted: list[bool] = []
    done = threading.Event()

    def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            done.set()
            return
        c.subscribe([(t, 1) for t in topics])

    def on_subscribe(_c: paho.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        granted.extend(not r.is_failure for r in reasons)
        done.set()

    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.connect(host, int(port))
    client.loop_start()
    try:
        done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return granted


def _delivered(url: str, user: str, password: str, topics: list[str], server: tuple[str, str], own: str) -> list[bool]:
    """Which of `topics` reach `user`: the server publishes to each, then to the user's own topic as a barrier."""
    host, port = url.removeprefix("mqtt://").split(":")
    got: list[str] = []
    subscribed, barrier = threading.Event(), threading.Event()
    listener = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, clean_session=True)
    listener.username_pw_set(user, password)
    listener.on_connect = lambda c, _u, _f, _r, _p: c.subscribe([(t, 1) for t in [*topics, own]])
    listener.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c: paho.Client, _u: Any, message: Any) -> None:
        got.append(message.topic)
        if message.topic == own:
            barrier.set()

    listener.on_message = on_message
    listener.connect(host, int(port))
    listener.loop_start()
    sender = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="vb-test-sender")
    sender.username_pw_set(*server)
    sender.connect(host, int(port))
    sender.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK"
        for topic in [*topics, own]:
            sender.publish(topic, b"probe", qos=1).wait_for_publish(10)
        assert barrier.wait(10), "the barrier never arrived"
    finally:
        for client in (listener, sender):
            client.disconnect()
            client.loop_stop()
    return [t in got for t in topics]


def _broadcast(deployment: Deployment, clip_id: int, target: str) -> int:
    status, body = http(
        "POST", deployment.base + "/api/v1/broadcasts", deployment.token, {"clip_id": clip_id, "targets": [target]}
    )
    assert status == 201, body
    return body["id"]


def _reported_grid(deployment: Deployment) -> str | None:
    """The grid the speaker says it listens to (its last state, as the worker stored it)."""
    from broadcast.models import Speaker

    with deployment.platform.db.transaction() as session:
        speaker = session.get(Speaker, SPEAKER)
        return (speaker.state or {}).get("grid") if speaker is not None else None


def _regions_commands(deployment: Deployment) -> int:
    from sqlalchemy import func, select

    from broadcast.models import Command

    with deployment.platform.db.transaction() as session:
        return int(session.scalar(select(func.count()).where(Command.kind == "regions")) or 0)


def _played(deployment: Deployment) -> list[str]:
    return [e["broadcast_id"] for e in timeline(deployment.sink(SPEAKER)) if e["event"] == "started"]


def test_a_moved_speaker_obeys_only_its_new_grid(deployment: Deployment) -> None:
    base, token = deployment.base, deployment.token
    config_before = deployment.configs[SPEAKER].read_text()
    deployment.start_agent(SPEAKER, name="before")
    deployment.wait_online(SPEAKER)
    wait_for(lambda: _reported_grid(deployment) == OLD_GRID, 30, "the speaker to report its grid")
    status, clip = http("POST", base + "/api/v1/clips", token, {"text": "请注意，这是迁移测试。"})
    assert status == 201, clip
    before = _broadcast(deployment, clip["id"], OLD_GRID)  # the positive path: it obeys its grid now
    wait_for(lambda: deployment.delivery(before, SPEAKER)["state"] == "finished", 60, "the play before the move")

    # The move, with the agent running: nothing is downloaded onto the box.
    status, moved = http("PATCH", f"{base}/api/v1/speakers/{SPEAKER}", token, {"grid_code": NEW_GRID})
    assert status == 200, moved
    assert moved["grid_code"] == NEW_GRID
    wait_for(lambda: _reported_grid(deployment) == NEW_GRID, 30, "the agent to follow its new grid")

    old = _broadcast(deployment, clip["id"], OLD_VILLAGE)
    new = _broadcast(deployment, clip["id"], NEW_GRID)
    wait_for(lambda: deployment.delivery(new, SPEAKER)["state"] == "finished", 60, "the play in the new grid")
    _, old_body = http("GET", f"{base}/api/v1/broadcasts/{old}", token)
    assert SPEAKER not in {d["speaker_id"] for d in old_body["deliveries"]}
    assert _played(deployment) == [str(before), str(new)]

    # Restarted with the very same configuration file, it still listens to its new grid.
    deployment.procs[-1].stop()
    wait_for(lambda: not deployment.online(SPEAKER), 30, "the agent offline")
    assert deployment.configs[SPEAKER].read_text() == config_before
    # The broker followed too, for the password the box already has: new grid granted, old refused.
    topics = [command_topic_for_region(deployment.prefix, g) for g in (NEW_GRID, OLD_GRID)]
    password = json.loads(config_before)["password"]
    wait_for(
        lambda: _suback(deployment.broker, SPEAKER, password, topics) == [True, False],
        30,
        "the broker to follow the move",
    )
    deployment.start_agent(SPEAKER, name="after")
    deployment.wait_online(SPEAKER)
    again = _broadcast(deployment, clip["id"], NEW_GRID)
    wait_for(lambda: deployment.delivery(again, SPEAKER)["state"] == "finished", 60, "the play after a restart")
    assert _played(deployment) == [str(before), str(new), str(again)]
    assert _reported_grid(deployment) == NEW_GRID


def test_a_speaker_offline_through_its_move_follows_when_it_returns(deployment: Deployment) -> None:
    base, token = deployment.base, deployment.token
    deployment.start_agent(SPEAKER, name="before")
    deployment.wait_online(SPEAKER)
    wait_for(lambda: _reported_grid(deployment) == OLD_GRID, 30, "the speaker to report its grid")
    deployment.procs[-1].stop()
    wait_for(lambda: not deployment.online(SPEAKER), 30, "the agent offline")
    status, moved = http("PATCH", f"{base}/api/v1/speakers/{SPEAKER}", token, {"grid_code": NEW_GRID})
    assert status == 200, moved
    assert _regions_commands(deployment) == 1
    # A clean session under the speaker's id drops what the broker queued for the box: the move command is lost.
    topics = [command_topic_for_region(deployment.prefix, g) for g in (NEW_GRID, OLD_GRID)]
    password = json.loads(deployment.configs[SPEAKER].read_text())["password"]
    wait_for(
        lambda: _suback(deployment.broker, SPEAKER, password, topics) == [True, False],
        30,
        "the broker to follow the move",
    )
    deployment.start_agent(SPEAKER, name="after")
    # it comes back reporting its old grid; the worker tells it again
    wait_for(lambda: _reported_grid(deployment) == NEW_GRID, 60, "the returning agent to follow its new grid")
    assert _regions_commands(deployment) == 2
    status, clip = http("POST", base + "/api/v1/clips", token, {"text": "请注意，这是迁移测试。"})
    assert status == 201, clip
    new = _broadcast(deployment, clip["id"], NEW_GRID)
    wait_for(lambda: deployment.delivery(new, SPEAKER)["state"] == "finished", 60, "the play in the new grid")
    assert _played(deployment) == [str(new)]


def test_mosquitto_follows_a_move_after_the_documented_reload(tmp_path: Path, sqlite_url: str) -> None:
    import os
    import signal

    from sqlalchemy import select

    from broadcast.models import Command
    from broadcast.services import provisioning
    from speakers.mosquitto_proc import MosquittoProcess, mosquitto_binary
    from tests.broadcast.conftest import auth, seed_county
    from tests.conftest import free_port, make_app
    from tests.requires import need

    need(mosquitto_binary(), "mosquitto not installed (Debian package `mosquitto`)")
    port = free_port()
    app = make_app(
        tmp_path / "instance",
        sqlite_url,
        MQTT_URL=f"mqtt://127.0.0.1:{port}",
        MQTT_USERNAME="vb-server",
        MQTT_PASSWORD="server-password-123",
    )
    platform = app.extensions["platform"]
    folder = tmp_path / "mosquitto"
    broker = MosquittoProcess(folder, port=port, password_file=folder / "passwd", acl_file=folder / "acl")
    try:
        headers = auth(seed_county(app)["admin"])
        client = app.test_client()
        config = client.post(f"/api/v1/speakers/{SPEAKER}/provision", headers=headers).get_json()
        assert not (platform.broker_dir / "acl").exists()  # an external broker: the server writes no files itself

        def broker_files() -> None:  # what `broadcast speakers broker-files FOLDER` does
            with platform.db.transaction() as session:
                provisioning.write_broker_files(session, platform, folder)

        broker_files()
        broker.start()
        prefix = platform.settings["TOPIC_PREFIX"]
        topics = [command_topic_for_region(prefix, g) for g in (NEW_GRID, OLD_GRID)]
        own = command_topic_for_speaker(prefix, SPEAKER)
        server = ("vb-server", "server-password-123")

        def reached() -> list[bool]:
            return _delivered(broker.url, SPEAKER, config["password"], topics, server, own)

        assert reached() == [False, True]
        moved = client.patch(f"/api/v1/speakers/{SPEAKER}", json={"grid_code": NEW_GRID}, headers=headers)
        assert moved.status_code == 200
        assert reached() == [False, True]  # Mosquitto has not been told yet
        with platform.db.transaction() as session:  # the box was told its new regions on its own topic
            told = session.scalars(select(Command).where(Command.kind == "regions")).one()
            assert told.published_at is not None
            assert told.body == {"body": {"regions": [NEW_GRID, *NEW_CHAIN]}, "targets": [f"speaker:{SPEAKER}"]}
        broker_files()
        assert broker._process is not None
        os.kill(broker._process.pid, signal.SIGHUP)  # the documented reload
        wait_for(lambda: reached() == [True, False], 10, "Mosquitto to reload its ACL")
    finally:
        broker.stop()
        platform.close()
