"""The server library: minimal topic sets, receipt/state consumption, signed time replies."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from speakers import protocol
from speakers.agent.replay import ReplayWindow
from speakers.agent.trust import KeyRing, Verifier
from speakers.errors import SpeakerError
from speakers.messages import Receipt, State, TimeRequest
from speakers.protocol import Ping, Target
from speakers.server import CommandPublisher, ReceiptConsumer, TimeResponder, minimal_targets
from speakers.signing import KeyPair
from speakers.transport import connect

from .conftest import Collector

PARENT = {"county": None, "town": "county", "village": "town", "grid": "village", "grid2": "village"}


def test_minimal_targets() -> None:
    targets = ["region:grid", "region:village", "speaker:s1", "speaker:s2", "region:grid", Target.region("grid2")]
    assert minimal_targets(targets) == sorted({Target.parse(t) for t in targets})
    kept = minimal_targets(targets, parent_of=PARENT, speaker_region={"s1": "grid", "s2": "elsewhere"})
    assert kept == [Target.region("village"), Target.speaker("s2")]
    assert minimal_targets(["region:town", "region:county"], parent_of=PARENT.get) == [Target.region("county")]


def test_publisher_sends_once_per_topic(broker_url: str, topic_prefix: str) -> None:
    key = KeyPair.generate()
    watcher = connect(broker_url, client_id=f"w-{uuid.uuid4().hex[:6]}")
    seen = Collector()
    watcher.subscribe(f"{topic_prefix}/cmd/#", seen.add)
    transport = connect(broker_url, client_id=f"p-{uuid.uuid4().hex[:6]}")
    publisher = CommandPublisher(transport, key, prefix=topic_prefix)
    time.sleep(0.2)
    now = time.time()
    topics = publisher.publish(
        Ping(), seq=9, command_id="c9", targets=["region:town", "region:village", "speaker:s1", "region:county"],
        issued_at=now, expires_at=now + 30, parent_of=PARENT, speaker_region={"s1": "grid"},
    )  # fmt: skip
    assert topics == [protocol.command_topic_for_region(topic_prefix, "county")]
    message = seen.wait(lambda m: True)[0]
    body = json.loads(json.loads(message.payload)["body"])
    assert body["targets"] == ["region:county"]
    assert body["seq"] == 9
    time.sleep(0.2)
    assert len(seen.items) == 1, "one publish for the whole county"
    with pytest.raises(SpeakerError):
        publisher.publish(Ping(), seq=10, command_id="c10", targets=[], issued_at=now, expires_at=now + 1)
    with pytest.raises(SpeakerError):
        publisher.publish(Ping(), seq=10, command_id="c10", targets=["region:x"], issued_at=now, expires_at=now)
    transport.close()
    watcher.close()


def test_consumer_passes_valid_and_drops_forged_attribution(broker_url: str, topic_prefix: str) -> None:
    transport = connect(broker_url, client_id=f"c-{uuid.uuid4().hex[:6]}")
    receipts, states = Collector(), Collector()
    consumer = ReceiptConsumer(transport, prefix=topic_prefix, on_receipt=receipts.add, on_state=states.add)
    consumer.start()
    sender = connect(broker_url, client_id=f"s-{uuid.uuid4().hex[:6]}")
    time.sleep(0.2)
    good = Receipt("s1", "c1", "b1", "finished", 1.0, detail={"played_ms": 5})
    sender.publish(protocol.receipt_topic(topic_prefix, "s1"), protocol.dumps(good.to_dict()).encode())
    spoof = Receipt("s2", "c1", "b1", "finished", 1.0)
    sender.publish(protocol.receipt_topic(topic_prefix, "s1"), protocol.dumps(spoof.to_dict()).encode())
    sender.publish(protocol.receipt_topic(topic_prefix, "s1"), b"{not json")
    sender.publish(protocol.state_topic(topic_prefix, "s1"), protocol.dumps(State("s1", True, 2.0).to_dict()).encode())
    sender.publish(protocol.state_topic(topic_prefix, "s1"), b"", retain=True)
    assert receipts.wait(lambda r: True)[0] == good
    assert states.wait(lambda s: True)[0] == State("s1", True, 2.0)
    time.sleep(0.3)
    assert len(receipts.items) == 1
    assert len(states.items) == 1
    assert consumer.dropped == 2
    consumer.stop()
    sender.close()
    transport.close()


def test_time_responder_signs_and_limits(broker_url: str, topic_prefix: str) -> None:
    key = KeyPair.generate()
    transport = connect(broker_url, client_id=f"t-{uuid.uuid4().hex[:6]}")
    responder = TimeResponder(transport, key, prefix=topic_prefix, max_per_minute=3)
    responder.start()
    speaker = connect(broker_url, client_id=f"sp-{uuid.uuid4().hex[:6]}")
    replies = Collector()
    speaker.subscribe(protocol.time_reply_topic(topic_prefix, "s1"), replies.add, qos=0)
    time.sleep(0.2)
    verifier = Verifier("s1", ["g"], KeyRing.from_config([key.public_b64()]), ReplayWindow())
    for i in range(5):
        request = TimeRequest("s1", f"{i:016x}", time.time())
        speaker.publish(protocol.time_request_topic(topic_prefix, "s1"), protocol.dumps(request.to_dict()).encode())
    wrong = TimeRequest("s2", "f" * 16, time.time())  # s1 asking on behalf of s2
    speaker.publish(protocol.time_request_topic(topic_prefix, "s1"), protocol.dumps(wrong.to_dict()).encode())
    first = replies.wait(lambda m: True, count=3)
    reply = verifier.verify_time_reply(first[0].payload, time.time())
    assert reply.nonce == f"{0:016x}"
    assert reply.t1 <= reply.t2 <= reply.t3 <= time.time()
    time.sleep(0.3)
    assert len(replies.items) == 3, "rate limited per speaker"
    responder.stop()
    speaker.close()
    transport.close()
