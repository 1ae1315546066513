"""The messages of the speaker protocol as dataclasses (JSON shapes in `speakers/schemas/`).

Commands (server → speaker, signed): Play, Stop, Volume, ScheduleSnapshot, TimeSync, Ping, KeyAnnouncement,
Regions.
Speaker → server: Receipt, State, TimeRequest. Server → speaker, signed with a nonce: TimeReply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Priorities, highest first. A higher one preempts a lower one at once.
PRIORITIES: tuple[str, ...] = ("emergency", "urgent", "normal", "background")
_RANK = {name: len(PRIORITIES) - i for i, name in enumerate(PRIORITIES)}

# Receipt events.
ACKNOWLEDGED = "acknowledged"  # command verified and accepted (queued, scheduled or applied)
STARTED = "started"  # the output began playing (at = first sample)
FINISHED = "finished"  # played to the end, all repeats
PREEMPTED = "preempted"  # interrupted by a higher priority
STOPPED = "stopped"  # ended or cancelled by a stop command
FAILED = "failed"  # could not play (reason: fetch_failed, hash_mismatch, decode_failed, output_error, interrupted)
MISSED = "missed"  # its start window passed before it could start (reason: expired)
REFUSED = "refused"  # device rules refused it (reason: quiet_hours)
REJECTED = "rejected"  # security: the command failed verification (reason below)
PONG = "pong"  # answer to ping
EVENTS: tuple[str, ...] = (
    ACKNOWLEDGED, STARTED, FINISHED, PREEMPTED, STOPPED, FAILED, MISSED, REFUSED, REJECTED, PONG,
)  # fmt: skip

# Reasons of a rejected command (security events).
REJECT_REASONS: tuple[str, ...] = (
    "malformed",  # not JSON, not an envelope, or the signed body breaks its schema
    "unsigned",  # no signature at all
    "unsupported_version",  # a protocol version this agent does not speak
    "unknown_key",  # signed by a key id the speaker does not trust
    "retired_key",  # signed by a key that rotation retired
    "wrong_key",  # a key announcement not signed by the current key
    "bad_signature",  # the signature does not match: forged or tampered
    "not_addressed",  # valid, but for other speakers (topic or targets)
    "expired",  # past its expiry
    "not_yet_valid",  # issued further in the future than the allowed clock skew
    "replayed",  # the same command id or sequence number was already accepted
    "out_of_window",  # sequence older than the anti-replay window
)


def priority_rank(priority: str) -> int:
    """Return a number that is larger for a more urgent priority (emergency highest)."""
    return _RANK[priority]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only the fields `cls` declares: extra fields from a newer server are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Command:
    """Base of the signed commands; `TYPE` is the wire name."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready `cmd` object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Command:
        """Build from a schema-checked `cmd` object."""
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Play(Command):
    """Play one clip at an absolute start time (server clock, unix seconds)."""

    TYPE: ClassVar[str] = "play"
    broadcast_id: str
    priority: str
    media_url: str
    sha256: str
    duration_ms: int
    start_at: float
    expires_at: float | None = None  # latest start; None = the command's expiry
    volume: int | None = None  # None = the speaker's current volume
    repeat: int = 1
    repeat_gap_ms: int = 2000
    title: str | None = None
    media_b64: str | None = None  # the whole clip inline (small clips: emergency and tones), no fetch needed

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready `cmd` object (media_b64 only when present)."""
        data = dataclasses.asdict(self)
        if data["media_b64"] is None:
            del data["media_b64"]
        return data


@dataclass(frozen=True)
class Stop(Command):
    """Stop and cancel one broadcast (or everything when broadcast_id is None)."""

    TYPE: ClassVar[str] = "stop"
    broadcast_id: str | None = None


@dataclass(frozen=True)
class Volume(Command):
    """Set the speaker's default volume, 0-100 (capped by its max_volume)."""

    TYPE: ClassVar[str] = "volume"
    volume: int = 80


@dataclass(frozen=True)
class ScheduledPlay:
    """One upcoming play of a schedule snapshot; item_id is stable for that occurrence."""

    item_id: str
    play: Play

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready item."""
        return {"item_id": self.item_id, "play": self.play.to_dict()}


@dataclass(frozen=True)
class KeepMedia:
    """Media every speaker must hold and never evict while listed (the attention tone): fetched on receipt."""

    sha256: str
    media_url: str
    duration_ms: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready entry."""
        return {"sha256": self.sha256, "media_url": self.media_url, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class ScheduleSnapshot(Command):
    """The speaker's upcoming plays (at least the next 24 h) and the media it must keep; replaces the previous."""

    TYPE: ClassVar[str] = "schedule"
    snapshot_id: str
    generated_at: float
    valid_until: float
    items: tuple[ScheduledPlay, ...] = ()
    keep: tuple[KeepMedia, ...] = ()  # optional on the wire: absent means "keep nothing in particular"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready `cmd` object (`keep` only when something is listed)."""
        data: dict[str, Any] = {
            "snapshot_id": self.snapshot_id,
            "generated_at": self.generated_at,
            "valid_until": self.valid_until,
            "items": [item.to_dict() for item in self.items],
        }
        if self.keep:
            data["keep"] = [entry.to_dict() for entry in self.keep]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleSnapshot:
        """Build from a schema-checked `cmd` object (items' plays are checked by the caller)."""
        items = tuple(ScheduledPlay(i["item_id"], Play.from_dict(i["play"])) for i in data["items"])  # type: ignore[arg-type]
        keep = tuple(KeepMedia(k["sha256"], k["media_url"], int(k["duration_ms"])) for k in data.get("keep") or ())
        return cls(data["snapshot_id"], data["generated_at"], data["valid_until"], items, keep)


@dataclass(frozen=True)
class TimeSync(Command):
    """Ask the speaker to measure its clock offset to the server now."""

    TYPE: ClassVar[str] = "time_sync"


@dataclass(frozen=True)
class Ping(Command):
    """Ask the speaker to answer with a pong receipt and publish its state."""

    TYPE: ClassVar[str] = "ping"


@dataclass(frozen=True)
class KeyAnnouncement(Command):
    """Announce the next server key; must be signed by the current key."""

    TYPE: ClassVar[str] = "key"
    public_key: str
    key_id: str
    retire_previous_at: float | None = None


@dataclass(frozen=True)
class Regions(Command):
    """The speaker was moved: its new grid first, then every ancestor (sent to its own topic only)."""

    TYPE: ClassVar[str] = "regions"
    regions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready `cmd` object."""
        return {"regions": list(self.regions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Regions:
        """Build from a schema-checked `cmd` object."""
        return cls(tuple(data["regions"]))


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.TYPE: cls for cls in (Play, Stop, Volume, ScheduleSnapshot, TimeSync, Ping, KeyAnnouncement, Regions)
}


@dataclass(frozen=True)
class Receipt:
    """What happened to a command on one speaker. `at` is the speaker's clock; server time = at + offset_ms/1000."""

    speaker_id: str
    command_id: str | None
    broadcast_id: str | None
    event: str
    at: float
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    offset_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready receipt (built by hand: fleets of simulated speakers send many)."""
        return {
            "v": 1,
            "speaker_id": self.speaker_id,
            "command_id": self.command_id,
            "broadcast_id": self.broadcast_id,
            "event": self.event,
            "at": self.at,
            "reason": self.reason,
            "detail": dict(self.detail),
            "seq": self.seq,
            "offset_ms": self.offset_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        """Build from a schema-checked receipt."""
        data = _known(cls, data)
        data.setdefault("command_id", None)
        data.setdefault("broadcast_id", None)
        return cls(**data)


@dataclass(frozen=True)
class State:
    """A speaker's health, published retained; the broker publishes the last-will form (online=False)."""

    speaker_id: str
    online: bool
    at: float
    will: bool = False
    agent_version: str | None = None
    playing: str | None = None
    playing_priority: str | None = None
    queue_length: int = 0
    schedule_items: int = 0
    clock_offset_ms: float | None = None
    clock_rtt_ms: float | None = None
    cache_bytes: int = 0
    cache_cap_bytes: int = 0
    rejected_count: int = 0
    cache_repairs: int = 0  # cached media found corrupt (hash changed) and fetched again
    volume: int = 0
    output: str | None = None
    last_error: str | None = None
    grid: str | None = None  # the grid whose topics it listens to (after a move: the new one)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready state (no nested values, so a shallow copy is exact)."""
        return {"v": 1, **self.__dict__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        """Build from a schema-checked state."""
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class TimeRequest:
    """A speaker asks for the server's clock (NTP-style t1)."""

    speaker_id: str
    nonce: str
    t1: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready request."""
        return {"v": 1, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class TimeReply:
    """The server's signed answer: t2 = request arrival, t3 = reply departure (server clock)."""

    speaker_id: str
    nonce: str
    t1: float
    t2: float
    t3: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready reply body."""
        return {"v": 1, **dataclasses.asdict(self)}
