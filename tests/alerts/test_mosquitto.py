"""An alert's commands on a real Mosquitto: tone, speech and, on Cancel, the stops reach the township's topic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest

from tests.alerts.conftest import HMAC_SECRET, place_speakers
from tests.alerts.corpus import SENDER, AreaSpec, InfoSpec, cap, cap_time
from tests.broadcast.conftest import HUANGSHA, seed_county
from tests.conftest import MQTT_URL, make_app
from tests.e2e.procs import wait_for
from tests.requires import need


class Listener:
    """A plain MQTT subscriber on `<prefix>/cmd/#` that keeps every message."""

    def __init__(self, url: str, prefix: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        parsed = urlparse(url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"{prefix}/cmd/#", qos=1)
        self.client.on_subscribe = lambda _c, _u, _m, _rc, _p: self.subscribed.set()
        self.client.on_message = self._keep
        self.client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        self.client.loop_start()

    def _keep(self, _client: Any, _userdata: Any, message: Any) -> None:
        envelope = json.loads(message.payload)  # {"v", "kid", "sig", "body": the signed JSON text}
        with self.lock:
            self.messages.append((message.topic, json.loads(envelope["body"])))

    def kinds(self) -> list[tuple[str, str]]:
        """(topic, command type) of everything received so far."""
        with self.lock:
            return [(topic, body.get("type", "?")) for topic, body in self.messages]

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mosquitto_app(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Any, Listener]]:
    """The app publishing to the external Mosquitto, and a subscriber on its command topics."""
    need(MQTT_URL, "Mosquitto: set BROADCAST_TEST_MQTT_URL=mqtt://host:port")
    assert MQTT_URL
    settings = {"MQTT_URL": MQTT_URL, "ALERT_HMAC_SECRET": HMAC_SECRET, "MQTT_TIMEOUT_S": 3}
    app = make_app(tmp_path / "instance", sqlite_url, **settings)
    listener = Listener(MQTT_URL, app.extensions["platform"].settings["TOPIC_PREFIX"])
    try:
        assert listener.subscribed.wait(10), "no SUBACK from the broker"
        yield app, listener
    finally:
        listener.close()
        app.extensions["platform"].close()


def _post(app: Any, body: bytes) -> dict[str, Any]:
    from broadcast.alerts.triggers import sign

    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(HMAC_SECRET, body)}
    response = app.test_client().post("/api/v1/alerts", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_tone_speech_and_stops_are_published(mosquitto_app: tuple[Any, Listener]) -> None:
    app, listener = mosquitto_app
    seed_county(app)
    place_speakers(app)
    prefix = app.extensions["platform"].settings["TOPIC_PREFIX"]
    township = f"{prefix}/cmd/region/{HUANGSHA}"
    area = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]
    sent = cap_time(datetime.now(UTC))
    first = _post(app, cap(ident="MQ-1", sent=sent, infos=[InfoSpec(areas=area)]))
    assert first["action"] == "broadcast"
    wait_for(lambda: listener.kinds().count((township, "play")) == 2, 30, "the tone and the speech on the topic")
    assert all(topic == township for topic, _ in listener.kinds())  # one publish per region, none elsewhere
    cancel = cap(ident="MQ-2", msg_type="Cancel", references=f"{SENDER},MQ-1,{sent}", infos=[InfoSpec(areas=area)])
    assert _post(app, cancel)["action"] == "cancelled"
    wait_for(lambda: listener.kinds().count((township, "stop")) == 2, 30, "stops of the speech and the tone")
