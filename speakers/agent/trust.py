"""Command verification on the speaker. Every check always runs; there is no switch to turn any off.

Order: envelope shape → version → key → signature → duplicate? → body schema → addressing → time →
anti-replay. Nothing inside the body is trusted before the signature has been checked. A command whose
id and signed body were handled before is a duplicate (the server re-sends until acknowledged), not a
replay: it raises `DuplicateCommand`, no alarm.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from speakers import protocol
from speakers.agent.dedup import DuplicateCommand, SeenCommands, body_digest
from speakers.agent.replay import ReplayWindow
from speakers.errors import SpeakerError
from speakers.messages import COMMAND_TYPES, KeyAnnouncement, TimeReply
from speakers.schema import SchemaError, validate
from speakers.signing import COMMAND_CONTEXT, TIME_CONTEXT, PublicKey

logger = logging.getLogger(__name__)

_KEY_CACHE: dict[str, PublicKey] = {}  # parsed keys shared by simulated speakers (saves memory)


def public_key(b64: str) -> PublicKey:
    """Parse (once per process) a base64 public key."""
    key = _KEY_CACHE.get(b64)
    if key is None:
        key = _KEY_CACHE[b64] = PublicKey.from_b64(b64)
    return key


class RejectedError(SpeakerError):
    """A command failed verification; `reason` is one of `protocol.REJECT_REASONS`."""

    def __init__(
        self, reason: str, *, command_id: str | None = None, broadcast_id: str | None = None, **detail: Any
    ) -> None:
        super().__init__(
            f"speakers.rejected.{reason}", f"指令被拒绝：{reason}", f"Command rejected: {reason}",
            kind="forbidden", **detail,
        )  # fmt: skip
        self.reason = reason
        self.command_id = command_id
        self.broadcast_id = broadcast_id  # read best-effort, for the report: the server learns which delivery
        self.remembered = False  # True when this rejection is now the remembered answer to its command id

    def name(self, claims: Claims) -> None:
        """Fill in the command and broadcast ids the message claims, where not known already."""
        self.command_id = self.command_id or claims.command_id
        self.broadcast_id = self.broadcast_id or claims.broadcast_id


@dataclass
class TrustedKey:
    """One server key the speaker trusts, until `retire_at` (server clock) when set."""

    key: PublicKey
    retire_at: float | None = None


@dataclass
class KeyRing:
    """The trusted server keys, current first."""

    keys: list[TrustedKey] = field(default_factory=list)

    @classmethod
    def from_config(cls, server_keys: list[str]) -> KeyRing:
        """Trust the provisioned keys (the first is current)."""
        return cls([TrustedKey(public_key(k)) for k in server_keys])

    def current(self) -> TrustedKey:
        """The key new announcements must be signed with."""
        return self.keys[0]

    def find(self, key_id: str) -> TrustedKey | None:
        """The trusted key with this id, if any."""
        return next((k for k in self.keys if k.key.key_id == key_id), None)

    def rotate(self, announcement: KeyAnnouncement) -> None:
        """Make the announced key current; the old one stays trusted until retire_previous_at."""
        new = public_key(announcement.public_key)
        if self.find(new.key_id):
            self.keys = [k for k in self.keys if k.key.key_id != new.key_id]
        self.keys[0].retire_at = announcement.retire_previous_at
        self.keys.insert(0, TrustedKey(new))
        del self.keys[4:]  # a bounded ring: older keys drop out

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready form."""
        return [{"public_key": k.key.b64(), "retire_at": k.retire_at} for k in self.keys]

    @classmethod
    def from_list(cls, data: list[dict[str, Any]]) -> KeyRing:
        """Restore persisted keys."""
        return cls([TrustedKey(public_key(d["public_key"]), d.get("retire_at")) for d in data])


# `speaker-agent simulate --shared-verify` only: the speakers simulated in one process stand for devices that
# each verify on a CPU of their own; here they share two cores with the broker and the server, and 10,000
# Ed25519 checks of one region command cost about a CPU-second. With sharing on, a signature that verified is
# remembered by its exact (key, signed bytes, signature), so the next speaker given byte-identical input gets
# the same answer without the arithmetic. Failures are never remembered: a changed byte is checked in full.
# Off by default and never used by a real speaker.
_VERIFIED: dict[tuple[bytes, bytes, bytes, bytes], bool] | None = None
_VERIFIED_MAX = 256


def share_verifications(on: bool = True) -> None:
    """Share successful signature checks of byte-identical input among this process's speakers (simulator)."""
    global _VERIFIED
    _VERIFIED = {} if on else None


def _verified(key: PublicKey, context: bytes, body: bytes, signature: bytes) -> bool:
    """`key.verify`, or a success already computed for exactly these bytes when sharing is on."""
    if _VERIFIED is None:
        return key.verify(context, body, signature)
    memo_key = (key.raw, context, body, signature)
    if memo_key in _VERIFIED:
        return True
    ok = key.verify(context, body, signature)
    if ok:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[memo_key] = True
    return ok


# Parsing is a pure function of the bytes: the speakers simulated in one process share its result for
# byte-identical messages (a region command reaches them all). Signatures, keys, addressing, expiry and
# the anti-replay window are still checked by every speaker for itself.
_PARSED: dict[tuple[str, bytes], Any] = {}
_PARSED_MAX = 256


def _memo(key: bytes, parse: Any) -> Any:
    memo_key = (parse.__name__, key)
    value = _PARSED.get(memo_key)
    if value is None:
        value = parse(key)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[memo_key] = value
    return value


@dataclass(frozen=True)
class Claims:
    """What a command body says about itself, read without trusting it (for reports and duplicates)."""

    command_id: str | None
    broadcast_id: str | None
    expires_at: float | None
    digest: str


def _claims(body: bytes) -> Claims:
    """Best-effort ids of a body (even one that breaks its schema); never raises."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    cmd = doc.get("cmd") if isinstance(doc.get("cmd"), dict) else {}
    expires = doc.get("expires_at")
    return Claims(
        command_id=_short(doc.get("id")),
        broadcast_id=_short(cmd.get("broadcast_id")),
        expires_at=float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None,
        digest=body_digest(body),
    )


def _short(value: Any) -> str | None:
    """A claimed id for a report: a string, shortened to the receipt schema's 64 characters."""
    return value[:64] if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Envelope:
    """A parsed, schema-checked envelope, with its body as the signed bytes and its signature decoded."""

    data: dict[str, Any]
    body: bytes
    signature: bytes | None  # None: not a 64-byte base64 signature


def _envelope(payload: bytes) -> Envelope:
    # One parsed object per distinct payload: the body bytes it holds are then the same object for every
    # speaker given that payload, so the later lookups keyed by them hash it once, not once per speaker.
    return _memo(payload, _parse_envelope)  # type: ignore[no-any-return]


def _parse_envelope(payload: bytes) -> Envelope:
    data = _envelope_data(payload)
    # a lone surrogate no server signs: its body never verifies (bad_signature)
    return Envelope(data, data["body"].encode("utf-8", "surrogatepass"), protocol.decode_signature(data["sig"]))


def _envelope_data(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RejectedError("malformed", problem="not JSON") from exc
    if not isinstance(data, dict):
        raise RejectedError("malformed", problem="not an object")
    try:
        if not data.get("sig"):
            raise RejectedError("unsigned")
        try:
            validate(data, "envelope")
        except SchemaError as exc:
            raise RejectedError("malformed", problem=str(exc)) from exc
        if data["v"] != protocol.PROTOCOL_VERSION:
            raise RejectedError("unsupported_version", version=data["v"])
    except RejectedError as rejection:
        rejection.name(_claimed(data))  # untrusted: for the report only
        raise
    return data


def _claimed(data: dict[str, Any]) -> Claims:
    """What an unverified envelope (or a bare command without one) claims to be."""
    body = data.get("body")
    if isinstance(body, str):
        return _claims(body.encode("utf-8", "replace"))
    return _claims(json.dumps(data).encode())


def _parse_command(body: bytes) -> tuple[dict[str, Any], Any]:
    """The schema-checked body and its command object (both treated as read-only)."""
    try:
        doc = json.loads(body)
        validate(doc, "command")
        try:
            protocol.check_command(doc["type"], doc["cmd"])
        except SchemaError as exc:
            raise SchemaError("$.cmd" + exc.path.removeprefix("$"), exc.problem) from None
    except (ValueError, SchemaError) as exc:
        raise RejectedError("malformed", problem=str(exc)) from exc
    return doc, COMMAND_TYPES[doc["type"]].from_dict(doc["cmd"])


class Verifier:
    """Checks commands and time replies for one speaker against its keys and anti-replay window."""

    def __init__(
        self,
        speaker_id: str,
        regions: list[str],
        keys: KeyRing,
        window: ReplayWindow,
        *,
        max_skew_s: float = 300.0,
        seen: SeenCommands | None = None,
    ) -> None:
        self.speaker_id = speaker_id
        self.addresses = {f"speaker:{speaker_id}", *(f"region:{code}" for code in regions)}
        self.keys = keys
        self.window = window
        self.max_skew_s = max_skew_s
        self.seen = seen if seen is not None else SeenCommands()

    def _signed_body(self, envelope: Envelope, context: bytes, now: float) -> tuple[bytes, TrustedKey]:
        key_id = envelope.data["kid"]
        trusted = self.keys.find(key_id)
        if trusted is None:
            raise RejectedError("unknown_key", key_id=key_id)
        if trusted.retire_at is not None and now >= trusted.retire_at:
            raise RejectedError("retired_key", key_id=key_id)
        body, signature = envelope.body, envelope.signature
        if signature is None or not _verified(trusted.key, context, body, signature):
            raise RejectedError("bad_signature", key_id=key_id)
        return body, trusted

    def verify_command(self, payload: bytes, now: float) -> protocol.SignedCommand:
        """Return the verified command, or raise RejectedError; `now` is the server clock as estimated.

        A verified command is recorded in the anti-replay window before this returns; an accepted or
        (after its signature checked) rejected command is remembered, so its re-sends raise
        `DuplicateCommand` instead.
        """
        envelope = _envelope(payload)
        try:
            body, trusted = self._signed_body(envelope, COMMAND_CONTEXT, now)
        except RejectedError as rejection:
            rejection.name(_memo(envelope.data["body"].encode("utf-8", "replace"), _claims))  # untrusted: report only
            raise
        claims: Claims = _memo(body, _claims)
        if claims.command_id is not None:
            entry = self.seen.lookup(claims.command_id, claims.digest)
            if entry is not None:
                raise DuplicateCommand(claims.command_id, entry[2])
        try:
            signed = self._check_body(body, trusted, now)
        except RejectedError as rejection:
            rejection.name(claims)
            if claims.command_id is not None:
                # only a first sighting owns the entry: a replay of an accepted id must not overwrite it
                rejection.remembered = self.seen.remember(claims.command_id, claims.digest, claims.expires_at, now)
            raise
        self.seen.remember(signed.id, claims.digest, signed.expires_at, now)
        return signed

    def _check_body(self, body: bytes, trusted: TrustedKey, now: float) -> protocol.SignedCommand:
        """Schema, addressing, time and anti-replay checks of a signed body."""
        doc, command = _memo(body, _parse_command)
        command_id = doc["id"]
        if not self.addresses.intersection(doc["targets"]):
            raise RejectedError("not_addressed", command_id=command_id)
        if doc["expires_at"] < now:
            raise RejectedError("expired", command_id=command_id, expired_s=round(now - doc["expires_at"], 3))
        if doc["issued_at"] > now + self.max_skew_s:
            raise RejectedError("not_yet_valid", command_id=command_id)
        reason = self.window.check(command_id, doc["seq"])
        if reason:
            raise RejectedError(reason, command_id=command_id, seq=doc["seq"], top=self.window.top)
        if isinstance(command, KeyAnnouncement):
            self._check_announcement(command, trusted, command_id)
        self.window.accept(command_id, doc["seq"], doc["expires_at"])  # expired ids: pruned by the heartbeat
        return protocol.SignedCommand(
            id=command_id,
            seq=doc["seq"],
            issued_at=doc["issued_at"],
            expires_at=doc["expires_at"],
            targets=tuple(doc["targets"]),
            command=command,
            key_id=trusted.key.key_id,
        )

    def _check_announcement(self, command: KeyAnnouncement, signer: TrustedKey, command_id: str) -> None:
        if signer is not self.keys.current():
            raise RejectedError("wrong_key", command_id=command_id, key_id=signer.key.key_id)
        try:
            new = public_key(command.public_key)
        except Exception as exc:
            raise RejectedError("malformed", command_id=command_id, problem="bad public key") from exc
        if new.key_id != command.key_id:
            raise RejectedError("malformed", command_id=command_id, problem="key_id does not match the key")

    def verify_time_reply(self, payload: bytes, now: float) -> TimeReply:
        """Return a verified time reply for this speaker, or raise RejectedError."""
        body, _trusted = self._signed_body(_envelope(payload), TIME_CONTEXT, now)
        try:
            doc = json.loads(body)
            validate(doc, "time_reply")
        except (ValueError, SchemaError) as exc:
            raise RejectedError("malformed", problem=str(exc)) from exc
        if doc["speaker_id"] != self.speaker_id:
            raise RejectedError("not_addressed")
        return TimeReply(doc["speaker_id"], doc["nonce"], doc["t1"], doc["t2"], doc["t3"])
