"""A lean asyncio MQTT 3.1.1 client for the speaker agent and the fleet simulator.

One object per connection, no task while connected, callbacks instead of futures: thousands of these fit
in one process (a paho client and its thread per speaker would not). It reconnects by itself with
exponential backoff and jitter, so a fleet coming back after a broker restart does not arrive all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from speakers.transport import codec

logger = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes, bool], None]


# Reads land in one scratch buffer per thread (asyncio hands it out, fills it and returns before its loop
# reads again), instead of a fresh 256 KiB allocation per read: thousands of connections read small packets.
# Per thread, not per process: two event loops in two threads would otherwise read into the same bytes, and
# one connection could parse what the other received.
_LOCAL = threading.local()


def _scratch() -> memoryview:
    """This thread's read buffer."""
    buffer: memoryview | None = getattr(_LOCAL, "scratch", None)
    if buffer is None:
        buffer = _LOCAL.scratch = memoryview(bytearray(65536))
    return buffer


class LeanMqttClient(asyncio.BufferedProtocol):
    """One MQTT connection that keeps itself connected until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        on_message: MessageCallback,
        subscriptions: Sequence[tuple[str, int]] = (),
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        clean_session: bool = True,
        keepalive: int = 60,
        ssl_context: ssl.SSLContext | None = None,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        puback_delay_s: float = 0.0,
        timers: Any = None,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.on_message = on_message
        self.subscriptions = list(subscriptions)
        self._auth = (username, password)
        self._will = will
        self._clean = clean_session
        self.keepalive = keepalive
        self._ssl = ssl_context
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self._backoff_min, self._backoff_max = reconnect_min_s, reconnect_max_s
        self._backoff = reconnect_min_s
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._next_id = 0
        self._acks: dict[int, Callable[[], None] | None] = {}
        self._timer: Any = None  # the next reconnect or keepalive check
        self._timers = timers  # a shared speakers.agent.timers.Timers, or None for the event loop's own
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._stopping = False
        self._connecting = False
        self._gone: asyncio.Event | None = None  # set once a stopped client's socket is closed
        self.connected = False
        self.last_error: str | None = None
        # PUBACKs may wait this long for the next packet to ride along with (fewer writes in a big fleet)
        self._puback_delay_s = puback_delay_s
        self._pending_acks = b""
        self._sub_requests: dict[int, list[str]] = {}  # SUBSCRIBE packet id -> its filters, until the SUBACK
        self.refused: set[str] = set()  # filters the broker refused (ACL): `subscribe` them again later

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (call from inside the running loop)."""
        self._stopping = False
        self._schedule_connect(0.0)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop reconnecting."""
        self._stopping = True
        self._gone = asyncio.Event()
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            if self.connected:
                self._transport.write(codec.DISCONNECT)
            self._transport.close()
        elif not self._connecting:
            self._gone.set()

    async def wait_stopped(self, timeout: float = 5.0) -> None:
        """After `stop()`: wait until the socket is really closed."""
        if self._gone is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), timeout)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker then sends the last will); keeps reconnecting."""
        if self._transport is not None:
            self._transport.abort()

    def _later(self, delay: float, fn: Callable[[], None]) -> Any:
        if self._timers is not None:
            return self._timers.call_later(delay, fn)
        return asyncio.get_running_loop().call_later(delay, fn)

    def _schedule_connect(self, delay: float) -> None:
        self._timer = self._later(delay, self._begin_connect)

    def _begin_connect(self) -> None:
        self._timer = None
        if self._stopping or self._connecting:
            return
        self._connecting = True
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(
                lambda: self, self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None
            )
        except (OSError, ssl.SSLError) as exc:
            self.last_error = str(exc)
            logger.debug("%s: connect to %s:%s failed: %s", self.client_id, self.host, self.port, exc)
            self._connecting = False
            if self._stopping and self._gone is not None:
                self._gone.set()
            self._retry()
            return
        self._connecting = False

    def _retry(self) -> None:
        if self._stopping:
            return
        delay = self._backoff * (0.5 + random.random())
        self._backoff = min(self._backoff * 2, self._backoff_max)
        self._schedule_connect(delay)

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send CONNECT as soon as TCP (and TLS) is up."""
        self._transport = transport  # type: ignore[assignment]
        if self._stopping:  # stopped while connecting
            transport.close()
            return
        self._buffer.clear()
        username, password = self._auth
        self._send(
            codec.connect_packet(
                self.client_id,
                keepalive=self.keepalive,
                clean_session=self._clean,
                username=username,
                password=password,
                will=self._will,
            )
        )
        self._last_rx = time.monotonic()
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and plan the next attempt."""
        was_connected = self.connected
        self.connected = False
        self._transport = None
        self._acks.clear()
        self._sub_requests.clear()
        self._pending_acks = b""  # the broker resends unacknowledged QoS 1 messages after a reconnect
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if exc is not None:
            self.last_error = str(exc)
        if self._stopping and self._gone is not None:
            self._gone.set()
        if was_connected and self.on_disconnect:
            self.on_disconnect()
        self._retry()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where asyncio should read into: this thread's scratch buffer."""
        return _scratch()

    def buffer_updated(self, nbytes: int) -> None:
        """Take what was read into this thread's scratch buffer."""
        self.data_received(_scratch()[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Parse whole packets out of the stream."""
        self._last_rx = time.monotonic()
        self._buffer += data
        try:
            packets = codec.split_packets(self._buffer)
            for first, body in packets:
                self._handle(first, body)
        except (codec.MqttProtocolError, struct.error, UnicodeDecodeError) as exc:
            logger.warning("%s: broken packet from broker: %s", self.client_id, exc)
            self.abort()

    # -- packets -------------------------------------------------------------------------------------

    def _handle(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == codec.PUBLISH:
            topic, payload, qos, retain, packet_id = codec.parse_publish(first, body)
            try:
                self.on_message(topic, payload, retain)
            except Exception:
                logger.exception("%s: message handler failed on %s", self.client_id, topic)
            if qos:
                self._puback(codec.puback_packet(packet_id))
        elif kind == codec.PUBACK:
            (packet_id,) = struct.unpack_from("!H", body, 0)
            callback = self._acks.pop(packet_id, None)
            if callback is not None:
                callback()
        elif kind == codec.CONNACK:
            self._on_connack(body)
        elif kind == codec.SUBACK:
            (packet_id,) = struct.unpack_from("!H", body, 0)
            for topic, code in zip(self._sub_requests.pop(packet_id, []), body[2:], strict=False):
                (self.refused.add if code == 0x80 else self.refused.discard)(topic)
            if b"\x80" in body[2:]:
                logger.warning("%s: the broker refused a subscription (ACL?)", self.client_id)
                self.last_error = "subscription refused"
        elif kind != codec.PINGRESP:
            logger.debug("%s: ignoring packet type %#x", self.client_id, kind)

    def _on_connack(self, body: bytes) -> None:
        session_present, code = bool(body[0] & 1), body[1]
        if code:
            self.last_error = codec.CONNACK_REASONS.get(code, f"refused ({code})")
            logger.warning("%s: broker refused the connection: %s", self.client_id, self.last_error)
            # bad credentials will not fix themselves quickly: wait the longest backoff
            self._backoff = self._backoff_max
            self.abort()
            return
        self.connected = True
        self.last_error = None
        self._backoff = self._backoff_min
        if self.subscriptions:
            self._send_subscribe(self.subscriptions)
        if self.on_connect:
            self.on_connect(session_present)

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> None:
        packet_id = self._packet_id()
        self._sub_requests[packet_id] = [topic for topic, _qos in filters]
        self._send(codec.subscribe_packet(packet_id, filters))

    def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Add (topic filter, QoS) subscriptions now and on every reconnect."""
        known = {topic for topic, _qos in self.subscriptions}
        self.subscriptions += [(t, q) for t, q in filters if t not in known]
        if self.connected and filters:
            self._send_subscribe(list(filters))

    def unsubscribe(self, topics: Sequence[str]) -> None:
        """Drop subscriptions now and for every reconnect."""
        gone = set(topics)
        self.subscriptions = [(t, q) for t, q in self.subscriptions if t not in gone]
        self.refused -= gone
        if self.connected and topics:
            self._send(codec.unsubscribe_packet(self._packet_id(), list(topics)))

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _puback(self, packet: bytes) -> None:
        if not self._puback_delay_s:
            self._send(packet)
            return
        if not self._pending_acks:
            _AckFlusher.of_loop(self._puback_delay_s).add(self)
        self._pending_acks += packet

    def flush_acks(self) -> None:
        """Send held PUBACKs now."""
        if self._pending_acks:
            self._send(b"")

    def _send(self, data: bytes) -> None:
        if self._pending_acks:
            data, self._pending_acks = self._pending_acks + data, b""
        if self._transport is not None and data:
            self._transport.write(data)
            self._last_tx = time.monotonic()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        on_ack: Callable[[], None] | None = None,
    ) -> bool:
        """Send a message; `on_ack` runs when the broker acknowledges QoS 1. False when not connected."""
        if not self.connected:
            return False
        packet_id = 0
        if qos:
            packet_id = self._packet_id()
            self._acks[packet_id] = on_ack
        self._send(codec.publish_packet(topic, payload, qos=qos, retain=retain, packet_id=packet_id, dup=False))
        return True

    # -- keepalive -----------------------------------------------------------------------------------

    def _arm_keepalive(self) -> None:
        if self.keepalive:
            self._timer = self._later(self.keepalive / 2, self._keepalive)

    def _keepalive(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        now = time.monotonic()
        if now - self._last_rx > self.keepalive * 1.5:
            logger.info("%s: broker silent for %.0f s, reconnecting", self.client_id, now - self._last_rx)
            self.abort()
            return
        if now - self._last_tx >= self.keepalive / 2:
            self._send(codec.PINGREQ)
        self._arm_keepalive()


class _AckFlusher:
    """One timer per event loop that sends every client's held PUBACKs (instead of a timer per client)."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, _AckFlusher]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> None:
        self.loop, self.delay_s = loop, delay_s
        self.clients: list[LeanMqttClient] = []
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of_loop(cls, delay_s: float) -> _AckFlusher:
        """The flusher of the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        flusher = cls._by_loop.get(loop)
        if flusher is None or flusher.loop.is_closed():
            cls._by_loop = {k: v for k, v in cls._by_loop.items() if not k.is_closed()}
            flusher = cls._by_loop[loop] = cls(loop, delay_s)
        return flusher

    def add(self, client: LeanMqttClient) -> None:
        """Flush `client` with the next batch."""
        self.clients.append(client)
        if self.timer is None:
            self.timer = self.loop.call_later(self.delay_s, self.flush)

    def flush(self) -> None:
        """Send every waiting client's PUBACKs."""
        self.timer = None
        clients, self.clients = self.clients, []
        for client in clients:
            client.flush_acks()
