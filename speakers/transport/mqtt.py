"""MQTT driver for the server library, on paho-mqtt (one network thread per connection).

A persistent session (clean_session=False) resumes right after CONNACK: the broker delivers what it queued
before the caller had a chance to subscribe again. Such messages are kept (up to `EARLY_MAX`) and handed to
the first handler whose filter matches, so a worker restart loses no queued receipt. When the broker says
it kept no session (session_present=0: it restarted, or the session was taken over or expired), every
filter is subscribed again, with a warning.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from speakers.errors import SpeakerError, unavailable
from speakers.transport.base import BrokerAddress, Handler, Message, Transport, register

logger = logging.getLogger(__name__)

EARLY_MAX = 100_000  # messages kept while no handler matches them yet


class MqttTransport(Transport):
    """A paho-mqtt connection that reconnects by itself and restores its subscriptions."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        url: str,
        client_id: str,
        username: str | None,
        password: str | None,
        will: tuple[str, bytes] | None,
        clean_session: bool,
        timeout: float,
        ca_file: str | None,
    ) -> None:
        self.url = url
        self._where = f"{address.scheme}://{address.host}:{address.port}"  # for logs: never user:password
        self.client_id = client_id
        self._timeout = timeout
        self._subs: dict[str, tuple[int, Handler]] = {}
        self._lock = threading.Lock()
        self._deliver = threading.RLock()  # early messages reach a new handler before newer ones
        self._early: deque[Message] = deque(maxlen=EARLY_MAX)
        self._clean_session = clean_session
        self.session_lost = 0  # reconnects where the broker had kept no session
        self._up = threading.Event()
        self._answered = threading.Event()  # the broker said yes or no to the first CONNECT
        self._refused: str | None = None
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(1, 30)
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        if address.tls:
            context = ssl.create_default_context(cafile=ca_file)
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        logger.debug("connecting %s to %s:%s", client_id, address.host, address.port)
        client.connect_async(address.host, address.port, keepalive=30)
        client.loop_start()
        if not self._answered.wait(timeout) or self._refused:
            reason = self._refused or "timeout"
            self.close()
            raise unavailable(
                "speakers.broker_unavailable",
                f"无法连接消息服务器 {address.host}:{address.port}（{reason}）。",
                f"Cannot connect to the broker {address.host}:{address.port} ({reason}).",
                reason=reason,
            )

    @property
    def early_count(self) -> int:
        """Messages received before any handler matched them, waiting for `subscribe()`."""
        return len(self._early)

    @property
    def persistent(self) -> bool:
        """True for a persistent session (clean_session=False): the broker queues while we are away."""
        return not self._clean_session

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._up.is_set()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            logger.warning("broker refused %s: %s", self.client_id, reason)
            self._answered.set()
            return
        with self._lock:
            subs = [(topic, qos) for topic, (qos, _h) in self._subs.items()]
        present = bool(getattr(flags, "session_present", False))
        if subs and not present and not self._clean_session:
            self.session_lost += 1
            logger.warning(
                "%s: the broker kept no session; subscribing to %d filter(s) again", self.client_id, len(subs)
            )
        if subs:
            client.subscribe(subs)  # also with a session: cheap, and a filter added meanwhile is included
        self._refused = None
        self._up.set()
        self._answered.set()
        logger.info("%s connected to %s", self.client_id, self._where)

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._up.clear()
        logger.info("%s disconnected from %s: %s", self.client_id, self._where, reason)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        message = Message(msg.topic, msg.payload, bool(msg.retain), msg.qos)
        with self._deliver:
            with self._lock:
                handlers = [h for f, (_q, h) in self._subs.items() if paho.topic_matches_sub(f, msg.topic)]
            if not handlers:
                if len(self._early) == self._early.maxlen:
                    logger.warning("%s: dropping an early message on %s (buffer full)", self.client_id, msg.topic)
                self._early.append(message)
                return
            self._call(handlers, message)

    @staticmethod
    def _call(handlers: list[Handler], message: Message) -> None:
        for handler in handlers:
            try:
                handler(message)
            except Exception:
                logger.exception("handler for %s failed", message.topic)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Send one message; for QoS 1 wait for the broker's acknowledgement."""
        deadline = time.monotonic() + self._timeout
        if not self._up.wait(self._timeout):
            raise self._unavailable(topic)
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            raise self._unavailable(topic) from exc
        if not info.is_published():
            raise self._unavailable(topic)

    def _unavailable(self, topic: str) -> SpeakerError:
        return unavailable(
            "speakers.publish_failed",
            f"消息未能送达消息服务器（{topic}）。",
            f"The broker did not accept the message on {topic}.",
            topic=topic,
        )

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Route messages matching `topic_filter` to `handler`, now and after every reconnect."""
        with self._deliver:
            with self._lock:
                self._subs[topic_filter] = (qos, handler)
            if self._up.is_set():
                self._client.subscribe(topic_filter, qos)
            early = [m for m in self._early if paho.topic_matches_sub(topic_filter, m.topic)]
            if early:
                logger.info(
                    "%s: delivering %d message(s) that arrived before %s", self.client_id, len(early), topic_filter
                )
                kept = [m for m in self._early if not paho.topic_matches_sub(topic_filter, m.topic)]
                self._early.clear()
                self._early.extend(kept)
                for message in early:
                    self._call([handler], message)

    def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving `topic_filter`."""
        with self._lock:
            self._subs.pop(topic_filter, None)
        if self._up.is_set():
            self._client.unsubscribe(topic_filter)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._up.clear()


def _factory(address: BrokerAddress, **kwargs: object) -> Transport:
    return MqttTransport(address, **kwargs)  # type: ignore[arg-type]


register("mqtt", _factory)
register("mqtts", _factory)
