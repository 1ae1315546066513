"""Fixtures of the speaker tests, reusable by other test packages.

- `broker_url`: an embedded broker, and the external Mosquitto of BROADCAST_TEST_MQTT_URL when set.
- `embedded_broker`, `topic_prefix` (unique per test), `server_key`, `clips` (generated tones), `media`
  (a Range-capable HTTP server for them), `server` (the real server library on the broker), `make_agent`
  (real agents in their own threads and event loops, with file sinks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from speakers.agent.core import Agent
from speakers.agent.outputs import create_output
from speakers.broker import EmbeddedBroker
from speakers.config import AgentConfig
from speakers.mediaserver import MediaServer
from speakers.messages import Command, Receipt, State
from speakers.protocol import Target
from speakers.server import CommandPublisher, ReceiptConsumer, TimeResponder
from speakers.signing import KeyPair
from speakers.transport import Transport, connect
from tests.requires import need

MQTT_URL = os.environ.get("BROADCAST_TEST_MQTT_URL")
COUNTY = "421224000000"
TOWNSHIP = "421224100000"
VILLAGE = "421224100201"
GRID = "42122410020101"
REGIONS = [GRID, VILLAGE, TOWNSHIP, COUNTY]


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker on a free port."""
    broker = EmbeddedBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(params=["embedded", "mosquitto"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL: the embedded broker, and the external Mosquitto when BROADCAST_TEST_MQTT_URL is set."""
    if request.param == "mosquitto":
        need(MQTT_URL, "BROADCAST_TEST_MQTT_URL not set (an external Mosquitto)")
        yield MQTT_URL  # type: ignore[misc]
        return
    broker = EmbeddedBroker()
    broker.start()
    yield broker.url
    broker.close()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses (the external broker is shared)."""
    return "t" + secrets.token_hex(6)


@pytest.fixture
def server_key() -> KeyPair:
    """The server's signing key for this test."""
    return KeyPair.generate()


@dataclass(frozen=True)
class Clip:
    """A generated test clip."""

    name: str
    path: Path
    sha256: str
    duration_ms: int


def make_tone(path: Path, *, seconds: float, frequency: int) -> Clip:
    """Encode a sine tone as MP3 with the bundled ffmpeg."""
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={frequency}:duration={seconds}", "-af", "volume=-12dB",
         "-ac", "1", "-ar", "22050", "-b:a", "64k", str(path)],
        check=True,
    )  # fmt: skip
    return Clip(path.name, path, hashlib.sha256(path.read_bytes()).hexdigest(), int(seconds * 1000))


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    """Tones: short (1 s), long (3 s), alarm (1.5 s), tiny (0.4 s)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "short": make_tone(folder / "short.mp3", seconds=1.0, frequency=440),
        "long": make_tone(folder / "long.mp3", seconds=3.0, frequency=660),
        "alarm": make_tone(folder / "alarm.mp3", seconds=1.5, frequency=880),
        "tiny": make_tone(folder / "tiny.mp3", seconds=0.4, frequency=550),
    }


@pytest.fixture
def media(clips: dict[str, Clip], tmp_path: Path) -> Iterator[MediaServer]:
    """An HTTP server for the clips (a private copy, so tests may add or corrupt files)."""
    root = tmp_path / "media"
    root.mkdir()
    for clip in clips.values():
        shutil.copy(clip.path, root / clip.name)
    server = MediaServer(root)
    server.start()
    yield server
    server.stop()


class Collector:
    """Thread-safe list of received items with waiting."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        """Append and wake waiters."""
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Any], bool], count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait until `count` items match; return the matches (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [i for i in self.items if predicate(i)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"timed out waiting for {count} matching item(s), found {len(found)}; "
                        f"last of {len(self.items)} received: {self.items[-5:]!r}"
                    )
                self._cond.wait(left)

    def matching(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Matches so far."""
        with self._cond:
            return [i for i in self.items if predicate(i)]


class ServerSide:
    """The real server library connected to the test broker."""

    def __init__(self, url: str, prefix: str, key: KeyPair) -> None:
        self.url, self.prefix, self.key = url, prefix, key
        self.transport: Transport = connect(url, client_id=f"server-{uuid.uuid4().hex[:8]}")
        self.publisher = CommandPublisher(self.transport, key, prefix=prefix)
        self.receipts = Collector()
        self.states = Collector()
        self.consumer = ReceiptConsumer(
            self.transport, prefix=prefix, on_receipt=self.receipts.add, on_state=self.states.add
        )
        self.consumer.start()
        self.responder = TimeResponder(self.transport, key, prefix=prefix)
        self.responder.start()
        self.seq = 1000

    def send(
        self,
        command: Command,
        targets: list[Target | str],
        *,
        seq: int | None = None,
        command_id: str | None = None,
        issued_at: float | None = None,
        expires_in: float = 60.0,
    ) -> str:
        """Sign and publish; return the command id."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        command_id = command_id or uuid.uuid4().hex
        issued = time.time() if issued_at is None else issued_at
        self.publisher.publish(
            command, seq=seq, command_id=command_id, targets=targets, issued_at=issued, expires_at=issued + expires_in
        )
        return command_id

    def receipt(self, speaker_id: str, event: str, *, timeout: float = 10.0, **match: Any) -> Receipt:
        """Wait for one receipt of `event` from `speaker_id` whose attributes equal `match`."""

        def ok(r: Receipt) -> bool:
            return r.speaker_id == speaker_id and r.event == event and all(getattr(r, k) == v for k, v in match.items())

        return self.receipts.wait(ok, timeout=timeout)[0]

    def events(self, speaker_id: str) -> list[Receipt]:
        """All receipts of one speaker so far."""
        return self.receipts.matching(lambda r: r.speaker_id == speaker_id)

    def online(self, speaker_id: str, timeout: float = 10.0) -> State:
        """Wait for the speaker's online state."""
        return self.states.wait(lambda s: s.speaker_id == speaker_id and s.online, timeout=timeout)[-1]

    def close(self) -> None:
        """Disconnect."""
        self.responder.stop()
        self.consumer.stop()
        self.transport.close()


@pytest.fixture
def server(broker_url: str, topic_prefix: str, server_key: KeyPair) -> Iterator[ServerSide]:
    """The server library on `broker_url`."""
    side = ServerSide(broker_url, topic_prefix, server_key)
    yield side
    side.close()


class AgentRunner:
    """A real agent in its own thread and event loop, with a file sink."""

    def __init__(self, config: AgentConfig, sink: Path, **agent_options: Any) -> None:
        self.config = config
        self.sink = sink
        self._options = agent_options
        self.agent: Agent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> AgentRunner:
        """Start the agent and return once it is created."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                self.agent = Agent(self.config, output=create_output("sink", sink_dir=self.sink), **self._options)
                loop.call_soon(self.agent.start)
                loop.call_soon(ready.set)
                self._loop = loop
                loop.run_forever()
                loop.run_until_complete(loop.shutdown_default_executor())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"agent-{self.config.speaker_id}", daemon=True)
        self._thread.start()
        assert ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the agent's loop and return its result."""
        assert self._loop is not None
        future: Any = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return future.result(10)

    def stop(self, *, clean: bool = True) -> None:
        """Stop: cleanly (offline state, DISCONNECT) or like a crash (connection dropped, no clean-up)."""
        if self._loop is None or self._thread is None:
            return
        agent = self.agent
        assert agent is not None
        if clean:
            asyncio.run_coroutine_threadsafe(agent.stop(), self._loop).result(10)
        else:
            asyncio.run_coroutine_threadsafe(_crash(agent), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        self._thread = None

    @property
    def id(self) -> str:
        """The speaker id (unique per test: the shared broker must never see two alike)."""
        return self.config.speaker_id

    def timeline(self) -> list[dict[str, Any]]:
        """The sink's timeline events."""
        return read_timeline(self.sink)


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


async def _crash(agent: Agent) -> None:
    """Drop everything like a power cut: no receipts, no persistence, no DISCONNECT."""
    agent.engine.close()
    for timer in agent._timers.values():
        timer.cancel()
    client = agent.client
    assert client is not None
    client._stopping = True
    client._gone = asyncio.Event()
    client.abort()
    await client.wait_stopped()


def read_timeline(sink: Path) -> list[dict[str, Any]]:
    """Events of a sink's timeline.jsonl (empty if none yet)."""
    path = sink / "timeline.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture
def make_agent(
    broker_url: str, topic_prefix: str, server_key: KeyPair, tmp_path: Path
) -> Iterator[Callable[..., AgentRunner]]:
    """Factory of started agents on `broker_url` (id = name + the test's prefix); all stop at teardown."""
    runners: list[AgentRunner] = []

    def factory(name: str = "spk", regions: list[str] | None = None, **overrides: Any) -> AgentRunner:
        speaker_id = f"{name}-{topic_prefix}"
        agent_options = ("time_sync_samples", "time_sync_spacing_s", "pcm")
        options = {k: overrides.pop(k) for k in list(overrides) if k in agent_options}
        options.setdefault("time_sync_spacing_s", 0.2)
        config = AgentConfig(
            speaker_id=speaker_id,
            broker_url=overrides.pop("broker_url", broker_url),
            username=overrides.pop("username", None),
            password=overrides.pop("password", None),
            topic_prefix=topic_prefix,
            regions=regions if regions is not None else list(REGIONS),
            server_keys=overrides.pop("server_keys", [server_key.public_b64()]),
            state_dir=tmp_path / speaker_id / "state",
            cache_dir=tmp_path / speaker_id / "cache",
            clean_session=overrides.pop("clean_session", True),
            **overrides,
        )
        runner = AgentRunner(config, tmp_path / speaker_id / "sink", **options).start()
        runners.append(runner)
        return runner

    yield factory
    for runner in runners:
        runner.stop()


class LinkProxy:
    """A TCP relay between agents and the broker whose link can be cut and restored (a 4G outage)."""

    def __init__(self, target_url: str) -> None:
        from speakers.transport import BrokerAddress

        address = BrokerAddress.parse(target_url)
        self.target = (address.host, address.port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # so close() is noticed promptly
        self.url = f"mqtt://127.0.0.1:{self._listener.getsockname()[1]}"
        self._up = True
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="link-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if not self._up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        """Cut every connection and refuse new ones."""
        self._up = False
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def up(self) -> None:
        """Accept connections again."""
        self._up = True

    def close(self) -> None:
        """Stop relaying."""
        self._closing = True
        self._thread.join(5)
        self.down()
        self._listener.close()


@pytest.fixture
def link(broker_url: str) -> Iterator[LinkProxy]:
    """A cuttable link to `broker_url` for agents (the server stays connected directly)."""
    proxy = LinkProxy(broker_url)
    yield proxy
    proxy.close()
