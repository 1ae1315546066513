"""Topics, targets, the signed envelope and the JSON schemas of every message."""

from __future__ import annotations

import dataclasses
import json

import pytest

from speakers import protocol
from speakers.errors import SpeakerError
from speakers.messages import COMMAND_TYPES, EVENTS, PRIORITIES, Receipt, State, TimeRequest, priority_rank
from speakers.protocol import Play, ScheduledPlay, ScheduleSnapshot, Target
from speakers.schema import SchemaError, load_schema, schema_names, validate
from speakers.signing import COMMAND_CONTEXT, KeyPair

SHA = "a" * 64


def play(**changes: object) -> Play:
    base = Play(broadcast_id="b1", priority="normal", media_url="http://m/x.mp3", sha256=SHA, duration_ms=1000,
                start_at=1000.0)  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_topics() -> None:
    assert protocol.command_topic_for_region("vb", "421224000000") == "vb/cmd/region/421224000000"
    assert protocol.command_topic_for_speaker("vb", "spk-1") == "vb/cmd/speaker/spk-1"
    assert protocol.receipt_topic("vb", "spk-1") == "vb/receipt/spk-1"
    assert protocol.receipt_topic("vb") == "vb/receipt/+"
    assert protocol.state_topic("x/y", "s") == "x/y/state/s"
    assert protocol.time_request_topic("vb", "s") == "vb/time/s/req"
    assert protocol.time_reply_topic("vb", "s") == "vb/time/s/resp"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65, "中文"])
def test_identifiers_that_would_break_topics_are_refused(bad: str) -> None:
    with pytest.raises(SpeakerError):
        protocol.command_topic_for_speaker("vb", bad)


def test_targets_parse_and_render() -> None:
    assert Target.parse("region:421224") == Target.region("421224")
    assert str(Target.speaker("s1")) == "speaker:s1"
    assert Target.parse(Target.speaker("s1")) == Target.speaker("s1")
    assert Target.region("42").topic("vb") == "vb/cmd/region/42"
    for bad in ("421224", "city:1", "region:a/b"):
        with pytest.raises(SpeakerError):
            Target.parse(bad)


def test_priorities_rank_in_order() -> None:
    assert PRIORITIES == ("emergency", "urgent", "normal", "background")
    ranks = [priority_rank(p) for p in PRIORITIES]
    assert ranks == sorted(ranks, reverse=True)


def test_encoded_command_is_a_valid_signed_envelope() -> None:
    key = KeyPair.generate()
    payload = protocol.encode_command(
        play(), signer=key, seq=7, command_id="c1", targets=[Target.region("42")], issued_at=1.0, expires_at=2.0
    )
    envelope = json.loads(payload)
    validate(envelope, "envelope")
    assert envelope["kid"] == key.key_id
    body = json.loads(envelope["body"])
    validate(body, "command")
    validate(body["cmd"], "play")
    assert body["targets"] == ["region:42"]
    assert body["seq"] == 7
    assert body["id"] == "c1"
    sig = protocol.decode_signature(envelope["sig"])
    assert sig is not None
    assert key.public_key().verify(COMMAND_CONTEXT, envelope["body"].encode(), sig)


def test_every_command_type_round_trips_through_its_schema() -> None:
    commands = [
        play(volume=60, repeat=2, expires_at=2000.0, title="通知"),
        protocol.Stop("b1"),
        protocol.Stop(None),
        protocol.Volume(55),
        ScheduleSnapshot("s1", 1.0, 2.0, (ScheduledPlay("i1", play(expires_at=1100.0)),)),
        protocol.TimeSync(),
        protocol.Ping(),
        protocol.KeyAnnouncement(KeyPair.generate().public_b64(), "0123456789abcdef", None),
        protocol.Regions(("42122410020101", "421224100201", "421224100000", "421224000000")),
    ]
    assert {c.TYPE for c in commands} == set(COMMAND_TYPES)
    for command in commands:
        data = json.loads(json.dumps(command.to_dict()))
        validate(data, command.TYPE)
        assert COMMAND_TYPES[command.TYPE].from_dict(data) == command


def test_receipt_state_and_time_request_match_their_schemas() -> None:
    receipt = Receipt("s1", "c1", "b1", "started", 1.5, None, {"volume": 80}, 3, 0.2)
    validate(receipt.to_dict(), "receipt")
    assert Receipt.from_dict(receipt.to_dict()) == receipt
    state = State("s1", True, 2.0, agent_version="0.1.0", volume=80, clock_offset_ms=1.5)
    validate(state.to_dict(), "state")
    assert State.from_dict(state.to_dict()) == state
    validate(TimeRequest("s1", "ab" * 8, 1.0).to_dict(), "time_request")
    assert set(load_schema("receipt")["properties"]["event"]["enum"]) == set(EVENTS)


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("play", {"broadcast_id": "b", "priority": "loud", "media_url": "http://x", "sha256": SHA,
                  "duration_ms": 1, "start_at": 1}, "$.priority"),
        ("play", {"broadcast_id": "b", "priority": "normal", "media_url": "ftp://x", "sha256": SHA,
                  "duration_ms": 1, "start_at": 1}, "$.media_url"),
        ("play", {"broadcast_id": "b", "priority": "normal", "media_url": "http://x", "sha256": "A" * 64,
                  "duration_ms": 1, "start_at": 1}, "$.sha256"),
        ("play", {"broadcast_id": "b", "priority": "normal", "media_url": "http://x", "sha256": SHA,
                  "duration_ms": True, "start_at": 1}, "$.duration_ms"),
        ("play", {"broadcast_id": "b", "priority": "normal", "media_url": "http://x", "sha256": SHA,
                  "duration_ms": 1}, "$"),
        ("volume", {"volume": 101}, "$.volume"),
        ("command", {"v": 1, "type": "play", "id": "c", "seq": 0, "issued_at": 1, "expires_at": 2,
                     "targets": ["region:1"], "cmd": {}}, "$.seq"),
        ("command", {"v": 1, "type": "play", "id": "c", "seq": 1, "issued_at": 1, "expires_at": 2,
                     "targets": ["everyone"], "cmd": {}}, "$.targets[0]"),
    ],
)  # fmt: skip
def test_schema_violations_say_where(name: str, value: dict, where: str) -> None:
    with pytest.raises(SchemaError) as exc:
        validate(value, name)
    assert exc.value.path == where


def test_all_schemas_load_and_use_only_supported_keywords() -> None:
    names = schema_names()
    assert {"envelope", "command", "receipt", "state", "time_request", "time_reply", *COMMAND_TYPES} <= set(names)
    for name in names:
        assert load_schema(name)["$id"].startswith("village-broadcast/v1/")


def test_dataclass_fields_are_all_in_their_schema() -> None:
    pairs = [(Play, "play"), (Receipt, "receipt"), (State, "state"), (protocol.KeyAnnouncement, "key")]
    for cls, name in pairs:
        props = set(load_schema(name)["properties"])
        assert {f.name for f in dataclasses.fields(cls)} <= props, name


def test_check_command_names_the_field_before_anything_is_stored() -> None:
    play = Play(broadcast_id="b1", priority="normal", media_url="http://m/x.mp3", sha256=SHA, duration_ms=1,
                start_at=1.0, title="标题" * 100)  # fmt: skip
    protocol.check_command("play", play.to_dict())  # the positive path: 200 characters is the limit
    with pytest.raises(SchemaError) as exc:
        protocol.check_command("play", {**play.to_dict(), "title": "长" * 201})
    assert exc.value.path == "$.title"
    assert "消息格式不符" in exc.value.zh
    snapshot = protocol.ScheduleSnapshot("s1", 1.0, 2.0, (protocol.ScheduledPlay("i1", play),))
    with pytest.raises(SchemaError) as exc:
        protocol.check_command("schedule", snapshot.to_dict())
    assert exc.value.path == "$.items[0].play.expires_at"
    with pytest.raises(SchemaError):
        protocol.check_command("reboot", {})


def test_every_string_field_has_a_max_length() -> None:
    def strings(node: object, where: str) -> list[str]:
        found = []
        if isinstance(node, dict):
            kind = node.get("type")
            if "string" in (kind if isinstance(kind, list) else [kind]) and "maxLength" not in node:
                found.append(where)
            for key, value in node.items():
                found += strings(value, f"{where}.{key}")
        return found

    assert [w for name in schema_names() for w in strings(load_schema(name), name)] == []


def test_inline_media_rides_in_play_only_when_given() -> None:
    play = Play(broadcast_id="b1", priority="emergency", media_url="http://m/x.mp3", sha256=SHA, duration_ms=1,
                start_at=1.0)  # fmt: skip
    assert "media_b64" not in play.to_dict(), "commands without inline media are byte-identical to before"
    inline = Play(**{**play.to_dict(), "media_b64": "QUJD"})
    validate(inline.to_dict(), "play")
    assert Play.from_dict(inline.to_dict()) == inline
    with pytest.raises(SchemaError) as exc:
        validate({**inline.to_dict(), "media_b64": "A" * 131073}, "play")
    assert exc.value.path == "$.media_b64"
