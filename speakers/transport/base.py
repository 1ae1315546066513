"""The transport driver interface (server side) and its registry, keyed by URL scheme."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One message received from the broker."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0


Handler = Callable[[Message], None]


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker URL: mqtt://host:port or mqtts://host:port (TLS), optional user:password@."""

    scheme: str
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raise SpeakerError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SpeakerError(
                "speakers.bad_broker_url",
                f"消息服务器地址应为 mqtt://主机:端口 或 mqtts://主机:端口，而不是 {url!r}",
                f"A broker URL is mqtt://host:port or mqtts://host:port, not {url!r}",
            )
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise SpeakerError("speakers.bad_broker_url", f"端口不合法：{url!r}", f"Invalid port in {url!r}") from exc
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.scheme, parts.hostname, port, tls, user, password)


class Transport(ABC):
    """A connection to a message broker used by the server library (publish, subscribe, close)."""

    url: str

    @abstractmethod
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Send one message; for QoS 1 return only once the broker has acknowledged it."""

    @abstractmethod
    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call `handler` for every message matching `topic_filter` (kept across reconnects)."""

    @abstractmethod
    def unsubscribe(self, topic_filter: str) -> None:
        """Stop receiving `topic_filter`."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect and release the connection's thread and sockets."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while the broker connection is up."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


TransportFactory = Callable[..., Transport]
TRANSPORTS: dict[str, TransportFactory] = {}


def register(scheme: str, factory: TransportFactory) -> None:
    """Make `factory` the driver for URLs with `scheme`."""
    TRANSPORTS[scheme] = factory


def connect(
    url: str,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes] | None = None,
    clean_session: bool = True,
    timeout: float = 10.0,
    ca_file: str | None = None,
) -> Transport:
    """Open a transport for `url` with the registered driver; returns once connected.

    Raises:
        SpeakerError: unsupported scheme (kind "unsupported") or broker unreachable (kind "unavailable").
    """
    address = BrokerAddress.parse(url)
    factory = TRANSPORTS.get(address.scheme)
    if factory is None:
        raise SpeakerError(
            "speakers.no_transport",
            f"没有支持 {address.scheme} 的传输驱动。",
            f"No transport driver for {address.scheme}.",
            kind="unsupported",
        )
    return factory(
        address,
        url=url,
        client_id=client_id,
        username=username if username is not None else address.username,
        password=password if password is not None else address.password,
        will=will,
        clean_session=clean_session,
        timeout=timeout,
        ca_file=ca_file,
    )
