"""The embedded MQTT broker (amqtt in its own thread and event loop) for one-machine installs and tests."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from speakers.acl import AclRules
from speakers.broker_plugins import ACL_FILES, LIVE_RULES
from speakers.errors import SpeakerError, unavailable
from speakers.mosquitto import parse_mosquitto_acl

logger = logging.getLogger(__name__)
SHUTDOWN_S = 5.0  # longest wait for amqtt's own shutdown before every connection is cut

# amqtt and its state-machine library log every connection at INFO; quiet them unless the app chose a level
for _name in ("amqtt", "transitions"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)
# A failed start (a port in use) is raised to the caller as one clear error; amqtt's own traceback of it is noise.
logging.getLogger("amqtt.broker").addFilter(lambda record: record.getMessage() != "Broker startup failed")


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """amqtt 0.12 iterates its subscription table across awaits; iterating a copy keeps a client that
    subscribes meanwhile from raising "dictionary changed size during iteration" in another's task."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """A copy of the items (see the class docstring)."""
        return list(super().items())


class _Broker(Broker):
    """amqtt's broker with fixes for 0.12 (see _SnapshotDict and the methods below)."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config, loop=loop)
        self._subscriptions = _SnapshotDict()
        self.writers: set[asyncio.StreamWriter] = set()
        # every connection's transport until it is really closed (one closing with unsent data is still open)
        self.transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """Track every client connection, so shutdown can close the ones amqtt leaves open."""
        self.writers.add(writer)
        self.transports.add(writer.transport)
        try:
            await super().stream_connected(reader, writer, listener_name)
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """Read the CONNECT and authenticate it *before* it may touch an existing session.

        amqtt 0.12 deletes (clean session) or rewrites (will, credentials) the session of the client id a
        CONNECT names, and takes over its connection, before authenticating it: any account, or a wrong
        password, could silence a speaker or the worker for good by connecting with its client id.
        """
        handler, incoming = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        existing = self._sessions.get(incoming.client_id or "", (None, None))[0]
        refused = not await self._authenticate(incoming, self.listeners_config["default"])
        if not refused and existing is not None and (existing.username or None) != (incoming.username or None):
            logger.warning(
                "embedded broker: %r may not take over the session of %r (client %s)",
                incoming.username, existing.username, incoming.client_id,
            )  # fmt: skip
            refused = True
        if refused:
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError(f"CONNECT of {incoming.client_id!r} refused")
        # from here on as amqtt does it (broker.py, Broker._initialize_client_session)
        if incoming.clean_session:
            if incoming.client_id:
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            incoming.parent = 0
        elif existing is not None:
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username", "password"):
                setattr(existing, name, getattr(incoming, name))
            existing.will_retain = incoming.will_retain
            incoming = existing
            incoming.parent = 1
        else:
            incoming.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if incoming.keep_alive > 0 and isinstance(delay, int):
            incoming.keep_alive += delay
        return handler, incoming

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        # amqtt 0.12 calls this on every connect for *every* filter any client subscribed to, leaking other
        # clients' retained messages (past the ACL) and costing O(filters x retained) per connect. Only a
        # filter this session really subscribed to may deliver retained messages to it.
        subscribers = dict.get(self._subscriptions, subscription[0], [])
        if any(s.client_id == session.client_id for s, _qos in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    """An MQTT 3.1.1 broker inside this process; `start()` returns once it accepts connections.

    With `password_file` (Mosquitto "$7$" format) only known accounts may connect; with `acl` (or
    `acl_file`, Mosquitto ACL format) each account may only use its topics. Both are re-read live:
    the password file when it changes on disk, the rules through `set_acl()`. An account is an
    identity: a speaker account must use its user name as client id (`server_users`, or else the
    accounts with wildcard write rules, may use any), no CONNECT may take over another account's
    session, and a last will must be on a topic the account may publish to.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        password_file: Path | None = None,
        acl: AclRules | None = None,
        acl_file: Path | None = None,
        server_users: list[str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.password_file = Path(password_file) if password_file else None
        self._acl_key = uuid.uuid4().hex
        if acl is None and acl_file is not None:
            acl_path = Path(acl_file)
            seen = acl_path.stat().st_mtime_ns
            acl = parse_mosquitto_acl(acl_path.read_text(encoding="utf-8"))
            ACL_FILES[self._acl_key] = (acl_path, seen)  # re-read whenever it changes (see refresh_rules)
        self._has_acl = acl is not None
        # the server's accounts may use any client id; None = those with wildcard write rules in the ACL
        self.server_users = list(server_users or [])
        LIVE_RULES[self._acl_key] = acl
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """mqtt://host:port of the running broker."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set() and not self._error

    def set_acl(self, acl: AclRules | None) -> None:
        """Replace the topic rules while running (None lifts all restrictions)."""
        if acl is not None and not self._has_acl:
            raise SpeakerError(
                "speakers.acl_not_enabled",
                "嵌入式消息服务器启动时未启用访问控制。",
                "The embedded broker was started without ACL rules; restart it with acl=...",
                kind="conflict",
            )
        LIVE_RULES[self._acl_key] = acl

    def _config(self) -> dict[str, Any]:
        plugins: dict[str, Any] = {}
        if self.password_file is not None:
            plugins["speakers.broker_plugins.PasswordFileAuth"] = {"password_file": str(self.password_file)}
        else:
            plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {"allow_anonymous": True}
        if self.password_file is not None or self._has_acl:
            plugins["speakers.broker_plugins.IdentityAuth"] = {
                "rules_key": self._acl_key,
                "server_users": ",".join(self.server_users),
                "bind_client_ids": self.password_file is not None,
            }
        if self._has_acl:
            plugins["speakers.broker_plugins.AclRulesPlugin"] = {"rules_key": self._acl_key}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": plugins,
        }

    def start(self) -> None:
        """Start listening; with port 0 a free port is chosen (and kept for later restarts)."""
        if self.running:
            return
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"embedded-broker-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout) or self._error is not None:
            self._thread.join(self._start_timeout)
            raise unavailable(
                "speakers.broker_start_failed",
                f"嵌入式消息服务器无法在 {self.host}:{self.port} 启动：{self._error}",
                f"The embedded broker could not start on {self.host}:{self.port}: {self._error}",
            )
        logger.info("embedded broker listening on %s", self.url)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_broker())
        except Exception as exc:
            # start() raises a clear error to the caller; the traceback is only for debugging
            logger.debug("embedded broker failed to start", exc_info=True)
            self._error = exc
            self._ready.set()
            self._close_loop(loop)
            return
        self._ready.set()
        try:
            loop.run_forever()
            if self._broker is not None:
                try:
                    loop.run_until_complete(asyncio.wait_for(self._broker.shutdown(), SHUTDOWN_S))
                except Exception as exc:  # a client that reads nothing can stall amqtt's shutdown
                    logger.warning("embedded broker shutdown incomplete: %s", exc)
                for transport in list(self._broker.transports):
                    # abort, not close: close() waits until the client has read what is buffered for it, so
                    # a slow or stalled client would stay connected (and think the broker alive) for ever
                    transport.abort()
                loop.run_until_complete(asyncio.sleep(0.05))  # let the transports finish closing
        finally:
            self._close_loop(loop)

    async def _start_broker(self) -> None:
        self._broker = _Broker(self._config(), loop=asyncio.get_running_loop())
        await self._broker.start()
        server = self._broker._servers["default"].instance  # amqtt offers no public accessor for the port
        self.port = server.sockets[0].getsockname()[1]

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)

    def stop(self) -> None:
        """Shut down: every client is disconnected (clients see the connection drop)."""
        if self._thread is None:
            return
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._thread = None
        self._loop = None
        self._broker = None
        logger.info("embedded broker on %s stopped", self.url)

    def close(self) -> None:
        """Stop and forget the ACL rules (the object cannot be restarted after this)."""
        self.stop()
        LIVE_RULES.pop(self._acl_key, None)
        ACL_FILES.pop(self._acl_key, None)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
