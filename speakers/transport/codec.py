"""MQTT 3.1.1 packet encoding and decoding for the lean client (only what a speaker needs)."""

from __future__ import annotations

import struct

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
UNSUBSCRIBE = 0xA2
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttProtocolError(ValueError):
    """The broker sent bytes that are not valid MQTT 3.1.1 (caught inside the client)."""


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str,
    *,
    keepalive: int,
    clean_session: bool,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    """Build CONNECT; `will` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive) + payload
    return bytes([CONNECT]) + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int, retain: bool, packet_id: int, dup: bool) -> bytes:
    """Build PUBLISH (QoS 0 or 1)."""
    header = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([header]) + _length(len(body)) + body


def puback_packet(packet_id: int) -> bytes:
    """Build PUBACK."""
    return b"\x40\x02" + struct.pack("!H", packet_id)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """Build SUBSCRIBE for (topic filter, max QoS) pairs."""
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
    return bytes([SUBSCRIBE]) + _length(len(body)) + body


def unsubscribe_packet(packet_id: int, topics: list[str]) -> bytes:
    """Build UNSUBSCRIBE for topic filters."""
    body = struct.pack("!H", packet_id) + b"".join(_str(t) for t in topics)
    return bytes([UNSUBSCRIBE]) + _length(len(body)) + body


def split_packets(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Remove and return every complete packet (first byte, body) from the front of `buffer`."""
    packets: list[tuple[int, bytes]] = []
    pos = 0
    size = len(buffer)
    while size - pos >= 2:
        multiplier, length, i = 1, 0, pos + 1
        while True:
            if i >= size:
                del buffer[:pos]
                return packets
            byte = buffer[i]
            length += (byte & 0x7F) * multiplier
            i += 1
            if not byte & 0x80:
                break
            multiplier *= 128
            if multiplier > 128**3:
                raise MqttProtocolError("remaining length too long")
        if size - i < length:
            break
        packets.append((buffer[pos], bytes(buffer[i : i + length])))
        pos = i + length
    del buffer[:pos]
    return packets


def parse_publish(first: int, body: bytes) -> tuple[str, bytes, int, bool, int]:
    """Return (topic, payload, qos, retain, packet_id) of a PUBLISH body."""
    qos = (first >> 1) & 0x03
    if qos > 1:
        raise MqttProtocolError("QoS 2 was never subscribed to")
    (tlen,) = struct.unpack_from("!H", body, 0)
    topic = body[2 : 2 + tlen].decode("utf-8")
    pos = 2 + tlen
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    return topic, body[pos:], qos, bool(first & 1), packet_id
