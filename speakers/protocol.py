"""Speaker protocol v1: topic names, targets, and the signed envelope. See docs/protocol.md.

Topics under a prefix P (all QoS 1 unless noted):
  P/cmd/region/<code>      server → every speaker of that region (and its descendants)
  P/cmd/speaker/<id>       server → one speaker
  P/receipt/<id>           speaker → server
  P/state/<id>             speaker → server, retained; the last will is the offline state
  P/time/<id>/req          speaker → server, QoS 0 (time request)
  P/time/<id>/resp         server → speaker, QoS 0 (signed time reply)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from speakers.config import region_chain_problem
from speakers.errors import SpeakerError
from speakers.messages import (  # re-exported: the protocol's public names live here
    COMMAND_TYPES,
    EVENTS,
    PRIORITIES,
    REJECT_REASONS,
    Command,
    KeepMedia,
    KeyAnnouncement,
    Ping,
    Play,
    Receipt,
    Regions,
    ScheduledPlay,
    ScheduleSnapshot,
    State,
    Stop,
    TimeReply,
    TimeRequest,
    TimeSync,
    Volume,
    priority_rank,
)
from speakers.schema import SchemaError, validate
from speakers.signing import COMMAND_CONTEXT, TIME_CONTEXT, KeyPair

__all__ = [
    "COMMAND_TYPES", "DEFAULT_PREFIX", "EVENTS", "PRIORITIES", "PROTOCOL_VERSION", "REJECT_REASONS",
    "Command", "KeepMedia", "KeyAnnouncement", "Ping", "Play", "Receipt", "Regions", "ScheduleSnapshot",
    "ScheduledPlay", "SignedCommand", "State", "Stop", "Target", "TimeReply", "TimeRequest", "TimeSync", "Volume",
    "check_command", "command_topic_for_region", "command_topic_for_speaker", "dumps", "encode_command",
    "encode_time_reply", "priority_rank", "receipt_topic", "state_topic", "time_reply_topic", "time_request_topic",
]  # fmt: skip

PROTOCOL_VERSION = 1
DEFAULT_PREFIX = "vb"

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise SpeakerError(
            "speakers.bad_identifier",
            f"{what} 不合法：{value!r}（只允许字母、数字、_ . -，最长 64 个字符）。",
            f"Invalid {what}: {value!r} (letters, digits, _ . - only; at most 64 characters).",
            value=str(value),
        )
    return value


def _prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise SpeakerError("speakers.bad_prefix", f"主题前缀不合法：{prefix!r}", f"Invalid topic prefix: {prefix!r}")
    return prefix


def command_topic_for_region(prefix: str, code: str) -> str:
    """Topic every speaker in region `code` (or below it) listens to."""
    return f"{_prefix(prefix)}/cmd/region/{_segment(code, 'region code')}"


def command_topic_for_speaker(prefix: str, speaker_id: str) -> str:
    """Topic only speaker `speaker_id` listens to."""
    return f"{_prefix(prefix)}/cmd/speaker/{_segment(speaker_id, 'speaker id')}"


def receipt_topic(prefix: str, speaker_id: str = "+") -> str:
    """Topic a speaker publishes receipts on (default: the filter for all speakers)."""
    return f"{_prefix(prefix)}/receipt/{speaker_id if speaker_id == '+' else _segment(speaker_id, 'speaker id')}"


def state_topic(prefix: str, speaker_id: str = "+") -> str:
    """Retained state topic of a speaker (default: the filter for all speakers)."""
    return f"{_prefix(prefix)}/state/{speaker_id if speaker_id == '+' else _segment(speaker_id, 'speaker id')}"


def time_request_topic(prefix: str, speaker_id: str = "+") -> str:
    """Topic a speaker sends time requests on (default: the filter for all speakers)."""
    sid = speaker_id if speaker_id == "+" else _segment(speaker_id, "speaker id")
    return f"{_prefix(prefix)}/time/{sid}/req"


def time_reply_topic(prefix: str, speaker_id: str) -> str:
    """Topic the server answers a speaker's time requests on."""
    return f"{_prefix(prefix)}/time/{_segment(speaker_id, 'speaker id')}/resp"


@dataclass(frozen=True, order=True)
class Target:
    """Who a command is for: a region (and everything below it) or one speaker. Text form `region:CODE`."""

    kind: str  # "region" | "speaker"
    id: str

    def __post_init__(self) -> None:
        if self.kind not in ("region", "speaker"):
            raise SpeakerError(
                "speakers.bad_target", f"目标类型不合法：{self.kind!r}", f"Invalid target kind: {self.kind!r}"
            )
        _segment(self.id, "region code" if self.kind == "region" else "speaker id")

    @classmethod
    def region(cls, code: str) -> Target:
        """Target a whole region by its code."""
        return cls("region", code)

    @classmethod
    def speaker(cls, speaker_id: str) -> Target:
        """Target one speaker by id."""
        return cls("speaker", speaker_id)

    @classmethod
    def parse(cls, value: Target | str) -> Target:
        """Accept a Target or its text form `region:CODE` / `speaker:ID`."""
        if isinstance(value, Target):
            return value
        kind, sep, ident = str(value).partition(":")
        if not sep:
            raise SpeakerError(
                "speakers.bad_target",
                f"目标应写作 region:代码 或 speaker:编号，而不是 {value!r}",
                f"A target is region:CODE or speaker:ID, not {value!r}",
            )
        return cls(kind, ident)

    def topic(self, prefix: str) -> str:
        """The command topic for this target."""
        if self.kind == "region":
            return command_topic_for_region(prefix, self.id)
        return command_topic_for_speaker(prefix, self.id)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def dumps(data: Any) -> str:
    """Compact JSON as used on the wire (UTF-8, no spaces)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SignedCommand:
    """A verified command as the agent sees it."""

    id: str
    seq: int
    issued_at: float
    expires_at: float
    targets: tuple[str, ...]
    command: Command
    key_id: str

    @property
    def type(self) -> str:
        """The wire name of the command."""
        return self.command.TYPE


def _envelope(signer: KeyPair, context: bytes, body: str) -> bytes:
    sig = base64.b64encode(signer.sign(context, body.encode("utf-8"))).decode("ascii")
    return dumps({"v": PROTOCOL_VERSION, "kid": signer.key_id, "sig": sig, "body": body}).encode("utf-8")


def command_body(
    command: Command,
    *,
    seq: int,
    command_id: str,
    targets: list[Target],
    issued_at: float,
    expires_at: float,
) -> str:
    """Return the exact JSON text that is signed for a command."""
    return dumps(
        {
            "v": PROTOCOL_VERSION,
            "type": command.TYPE,
            "id": command_id,
            "seq": seq,
            "issued_at": issued_at,
            "expires_at": expires_at,
            "targets": [str(t) for t in targets],
            "cmd": command.to_dict(),
        }
    )


def encode_command(
    command: Command,
    *,
    signer: KeyPair,
    seq: int,
    command_id: str,
    targets: list[Target],
    issued_at: float,
    expires_at: float,
) -> bytes:
    """Sign a command and return the envelope bytes to publish."""
    body = command_body(
        command, seq=seq, command_id=command_id, targets=targets, issued_at=issued_at, expires_at=expires_at
    )
    return _envelope(signer, COMMAND_CONTEXT, body)


def encode_time_reply(reply: TimeReply, signer: KeyPair) -> bytes:
    """Sign a time reply and return the envelope bytes."""
    return _envelope(signer, TIME_CONTEXT, dumps(reply.to_dict()))


def decode_signature(text: str) -> bytes | None:
    """Decode a base64 signature; None when it is not a 64-byte signature."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def _validate_at(value: Any, name: str, where: str) -> None:
    """Validate against schema `name`, reporting paths below `where` (e.g. `$.items[0].play.title`)."""
    try:
        validate(value, name)
    except SchemaError as exc:
        raise SchemaError(where + exc.path.removeprefix("$"), exc.problem) from None


def check_command(kind: str, cmd: dict[str, Any]) -> None:
    """Check a command's `cmd` object exactly as every speaker will, before it is stored or signed.

    Raises:
        SchemaError: naming the field (`$.title` too long, `$.items[2].play.expires_at` missing, ...).
    """
    if kind not in COMMAND_TYPES:
        raise SchemaError("$.type", f"unknown command type {kind!r}")
    _validate_at(cmd, kind, "$")
    if kind == "schedule":
        for i, item in enumerate(cmd["items"]):
            _validate_at(item["play"], "play", f"$.items[{i}].play")
            if item["play"].get("expires_at") is None:
                raise SchemaError(f"$.items[{i}].play.expires_at", "required in a schedule")
    elif kind == "regions" and (problem := region_chain_problem(cmd["regions"])) is not None:
        raise SchemaError("$.regions", problem)
