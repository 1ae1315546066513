"""Pin: how a speaker decides to trust a command or a time reply (keys, signature, addressing, time, replay).

Pure unit tests of `speakers.agent.trust` (no broker): the fast selection mutation testing runs.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from speakers import protocol
from speakers.agent import trust
from speakers.agent.dedup import GRACE_S, MAX_ENTRIES, DuplicateCommand, SeenCommands
from speakers.agent.replay import ReplayWindow
from speakers.agent.trust import KeyRing, RejectedError, Verifier, public_key
from speakers.messages import KeyAnnouncement, Ping, Stop, TimeReply
from speakers.protocol import Target
from speakers.server import key_announcement
from speakers.signing import COMMAND_CONTEXT, TIME_CONTEXT, KeyPair

NOW = 1_800_000_000.0
ME = "spk-1"
SERVER = KeyPair.generate()


def sealed(body: str, signer: KeyPair = SERVER, *, context: bytes = COMMAND_CONTEXT, **over: Any) -> bytes:
    """An envelope around `body`, signed by `signer` (fields in `over` replace the envelope's own)."""
    sig = base64.b64encode(signer.sign(context, body.encode())).decode()
    return protocol.dumps({"v": 1, "kid": signer.key_id, "sig": sig, "body": body, **over}).encode()


def body(cid: str = "c-1", seq: int = 1, *, targets: tuple[str, ...] = (f"speaker:{ME}",), cmd: Any = None,
         issued: float = NOW, expires: float = NOW + 60) -> str:  # fmt: skip
    """The signed text of a command (a ping unless `cmd` says otherwise)."""
    command = cmd if cmd is not None else Ping()
    return protocol.command_body(command, seq=seq, command_id=cid, targets=[Target.parse(t) for t in targets],
                                 issued_at=issued, expires_at=expires)  # fmt: skip


def verifier(*keys: KeyPair, regions: tuple[str, ...] = ("g-1", "t-1"), skew: float = 300.0) -> Verifier:
    """A speaker's verifier trusting `keys` (the server's key when none given)."""
    ring = KeyRing.from_config([k.public_b64() for k in keys or (SERVER,)])
    return Verifier(ME, list(regions), ring, ReplayWindow(), max_skew_s=skew)


def reason(v: Verifier, payload: bytes, now: float = NOW) -> str:
    """The rejection reason of `payload`."""
    with pytest.raises(RejectedError) as info:
        v.verify_command(payload, now)
    return info.value.reason


# --- keys -------------------------------------------------------------------------------------------------


def test_public_keys_are_parsed_once_and_shared() -> None:
    b64 = KeyPair.generate().public_b64()
    assert public_key(b64) is public_key(b64)
    assert public_key(b64).b64() == b64


def test_the_first_provisioned_key_is_current_and_each_is_found_by_id() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    ring = KeyRing.from_config([a.public_b64(), b.public_b64()])
    assert ring.current().key.key_id == a.key_id
    found = ring.find(b.key_id)
    assert found is not None
    assert found.key.key_id == b.key_id
    assert found.retire_at is None
    assert ring.find(KeyPair.generate().key_id) is None


def test_rotation_makes_the_new_key_current_and_retires_the_old_one_at_the_announced_time() -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    ring = KeyRing.from_config([old.public_b64()])
    ring.rotate(key_announcement(new, retire_previous_at=NOW + 3600))
    assert [k.key.key_id for k in ring.keys] == [new.key_id, old.key_id]
    assert ring.current().retire_at is None
    assert ring.keys[1].retire_at == NOW + 3600


def test_re_announcing_a_trusted_key_moves_it_to_the_front_without_a_second_copy() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    ring = KeyRing.from_config([a.public_b64(), b.public_b64()])
    ring.rotate(key_announcement(b, retire_previous_at=NOW))
    assert [k.key.key_id for k in ring.keys] == [b.key_id, a.key_id]
    assert ring.keys[1].retire_at == NOW


def test_the_ring_keeps_the_four_newest_keys() -> None:
    pairs = [KeyPair.generate() for _ in range(6)]
    ring = KeyRing.from_config([pairs[0].public_b64()])
    for pair in pairs[1:]:
        ring.rotate(key_announcement(pair))
    assert [k.key.key_id for k in ring.keys] == [p.key_id for p in reversed(pairs[2:])]


def test_the_ring_round_trips_through_its_saved_form() -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    ring = KeyRing.from_config([old.public_b64()])
    ring.rotate(key_announcement(new, retire_previous_at=NOW + 5))
    saved = json.loads(json.dumps(ring.to_list()))
    assert saved == [{"public_key": new.public_b64(), "retire_at": None},
                     {"public_key": old.public_b64(), "retire_at": NOW + 5}]  # fmt: skip
    restored = KeyRing.from_list(saved)
    assert [(k.key.key_id, k.retire_at) for k in restored.keys] == [(new.key_id, None), (old.key_id, NOW + 5)]
    assert KeyRing.from_list([{"public_key": old.public_b64()}]).keys[0].retire_at is None


# --- the envelope -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\xfe", "malformed"),
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (protocol.dumps({"v": 1, "kid": SERVER.key_id, "body": body()}).encode(), "unsigned"),
        (protocol.dumps({"v": 1, "kid": SERVER.key_id, "sig": "", "body": body()}).encode(), "unsigned"),
        (sealed(body(), kid="not-hex"), "malformed"),
        (sealed(body(), v=2), "unsupported_version"),
    ],
)
def test_a_broken_envelope_is_refused_before_any_key_is_looked_at(payload: bytes, expected: str) -> None:
    assert reason(verifier(), payload) == expected


def test_a_refused_envelope_still_names_the_command_it_claims_to_be() -> None:
    claimed = body("c-claimed", cmd=Stop(broadcast_id="b-9"))
    with pytest.raises(RejectedError) as info:
        verifier().verify_command(sealed(claimed, v=2), NOW)
    assert (info.value.reason, info.value.command_id, info.value.broadcast_id) == (
        "unsupported_version", "c-claimed", "b-9")  # fmt: skip
    bare = protocol.dumps({"id": "c-bare", "cmd": {"broadcast_id": "b-bare"}}).encode()
    with pytest.raises(RejectedError) as info:
        verifier().verify_command(bare, NOW)
    assert (info.value.reason, info.value.command_id, info.value.broadcast_id) == ("unsigned", "c-bare", "b-bare")


def test_claimed_ids_are_read_without_trust_and_never_raise() -> None:
    claims = trust._claims(protocol.dumps({"id": "x" * 80, "cmd": {"broadcast_id": "b"}, "expires_at": 5}).encode())
    assert (claims.command_id, claims.broadcast_id, claims.expires_at) == ("x" * 64, "b", 5.0)
    assert isinstance(claims.expires_at, float)
    wrong_types = b'{"id": 7, "cmd": {"broadcast_id": 8}, "expires_at": "x"}'
    for nothing in [b'{"id": "", "cmd": [], "expires_at": true}', wrong_types, b"\xff", b"[1]"]:
        claims = trust._claims(nothing)
        assert (claims.command_id, claims.broadcast_id, claims.expires_at) == (None, None, None)
    assert trust._claims(b'{"expires_at": 1.5}').expires_at == 1.5
    assert trust._claims(b"{}").digest != trust._claims(b"{ }").digest


# --- key and signature --------------------------------------------------------------------------------


def test_a_valid_command_is_returned_field_by_field() -> None:
    signed = verifier().verify_command(sealed(body("c-ok", 7, issued=NOW - 1, expires=NOW + 9)), NOW)
    assert (signed.id, signed.seq, signed.issued_at, signed.expires_at) == ("c-ok", 7, NOW - 1, NOW + 9)
    assert signed.targets == (f"speaker:{ME}",)
    assert signed.key_id == SERVER.key_id
    assert isinstance(signed.command, Ping)


def test_an_unknown_key_is_refused_and_the_report_names_the_claimed_command() -> None:
    stranger = KeyPair.generate()
    with pytest.raises(RejectedError) as info:
        verifier().verify_command(sealed(body("c-x", cmd=Stop(broadcast_id="b-x")), stranger), NOW)
    assert (info.value.reason, info.value.command_id, info.value.broadcast_id) == ("unknown_key", "c-x", "b-x")


def test_a_retired_key_is_refused_from_its_retirement_instant() -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    v = verifier(new, old)
    v.keys.keys[1].retire_at = NOW + 10
    assert v.verify_command(sealed(body("c-1", 1), old), NOW + 9.999).id == "c-1"
    assert reason(v, sealed(body("c-2", 2), old), NOW + 10) == "retired_key"
    assert v.verify_command(sealed(body("c-3", 3), new), NOW + 10).id == "c-3"


@pytest.mark.parametrize(
    "forge",
    [
        lambda b: sealed(b.replace("c-1", "c-2"), sig=json.loads(sealed(b))["sig"]),  # body changed after signing
        lambda b: sealed(b, context=TIME_CONTEXT),  # a time-reply signature reused for a command
        lambda b: sealed(b, sig="!" * 88),  # not base64
        lambda b: sealed(b, sig=base64.b64encode(b"\0" * 65).decode()),  # not 64 bytes
    ],
)
def test_a_signature_that_does_not_match_is_refused(forge: Any) -> None:
    assert reason(verifier(), forge(body("c-1"))) == "bad_signature"


def test_a_key_announcement_must_be_signed_with_the_current_key() -> None:
    current, older, nxt = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    v = verifier(current, older)
    announce = key_announcement(nxt)
    assert reason(v, sealed(body("k-1", 1, cmd=announce), older)) == "wrong_key"
    assert isinstance(v.verify_command(sealed(body("k-2", 2, cmd=announce), current), NOW).command, KeyAnnouncement)


def test_a_key_announcement_with_a_key_id_that_does_not_match_its_key_is_malformed() -> None:
    other = KeyPair.generate()
    lying = KeyAnnouncement(public_key=KeyPair.generate().public_b64(), key_id=other.key_id)
    assert reason(verifier(), sealed(body("k-1", cmd=lying))) == "malformed"


# --- the body ---------------------------------------------------------------------------------------------


def test_a_body_that_breaks_its_schema_is_malformed_and_names_the_field() -> None:
    broken = json.loads(body("c-1", cmd=Stop(broadcast_id="b-1")))
    broken["cmd"]["broadcast_id"] = 5
    with pytest.raises(RejectedError) as info:
        verifier().verify_command(sealed(protocol.dumps(broken)), NOW)
    assert info.value.reason == "malformed"
    assert "$.cmd.broadcast_id" in info.value.details["problem"]
    assert info.value.command_id == "c-1"
    assert reason(verifier(), sealed("{not json}")) == "malformed"


@pytest.mark.parametrize(
    ("targets", "ok"),
    [
        ((f"speaker:{ME}",), True),
        (("region:g-1",), True),
        (("region:t-1", "speaker:other"), True),
        (("speaker:other",), False),
        (("region:g-2",), False),
        ((f"region:{ME}",), False),
    ],
)
def test_only_commands_addressed_to_the_speaker_or_its_regions_are_taken(targets: tuple[str, ...], ok: bool) -> None:
    payload = sealed(body(targets=targets))
    if ok:
        assert verifier().verify_command(payload, NOW).targets == targets
    else:
        assert reason(verifier(), payload) == "not_addressed"


def test_a_command_is_taken_up_to_its_expiry_instant_and_refused_after() -> None:
    assert verifier().verify_command(sealed(body(expires=NOW)), NOW).id == "c-1"
    with pytest.raises(RejectedError) as info:
        verifier().verify_command(sealed(body(expires=NOW - 2.5)), NOW)
    assert info.value.reason == "expired"
    assert info.value.details["expired_s"] == 2.5


def test_a_command_issued_beyond_the_clock_skew_allowance_is_not_yet_valid() -> None:
    assert verifier(skew=30).verify_command(sealed(body(issued=NOW + 30, expires=NOW + 90)), NOW).id == "c-1"
    assert reason(verifier(skew=30), sealed(body(issued=NOW + 30.5, expires=NOW + 90))) == "not_yet_valid"
    assert reason(verifier(), sealed(body(issued=NOW + 301, expires=NOW + 400))) == "not_yet_valid"


# --- duplicates and replays -------------------------------------------------------------------------------


def test_a_resent_command_is_a_duplicate_answered_with_its_latest_receipt() -> None:
    v = verifier()
    payload = sealed(body("c-1", 1))
    v.verify_command(payload, NOW)
    v.seen.note_receipt("c-1", {"event": "finished"})
    with pytest.raises(DuplicateCommand) as info:
        v.verify_command(payload, NOW + 1)
    assert (info.value.command_id, info.value.receipt) == ("c-1", {"event": "finished"})


def test_the_same_id_with_another_body_is_a_replay() -> None:
    v = verifier()
    v.verify_command(sealed(body("c-1", 1)), NOW)
    with pytest.raises(RejectedError) as info:
        v.verify_command(sealed(body("c-1", 2)), NOW)
    assert info.value.reason == "replayed"
    assert info.value.details["seq"] == 2
    assert info.value.details["top"] == 1
    assert info.value.remembered is False  # the accepted command keeps its entry
    assert v.seen.lookup("c-1", trust._claims(body("c-1", 1).encode()).digest) is not None


def test_an_older_sequence_from_another_id_inside_the_window_is_taken_once() -> None:
    v = verifier()
    v.verify_command(sealed(body("c-5", 5)), NOW)
    assert v.verify_command(sealed(body("c-3", 3)), NOW).seq == 3
    assert reason(v, sealed(body("c-3b", 3))) == "replayed"


def test_a_command_refused_after_its_signature_checked_is_remembered_so_resends_are_duplicates() -> None:
    v = verifier()
    payload = sealed(body("c-1", targets=("speaker:other",)))
    with pytest.raises(RejectedError) as info:
        v.verify_command(payload, NOW)
    assert info.value.remembered is True
    assert info.value.command_id == "c-1"
    with pytest.raises(DuplicateCommand):
        v.verify_command(payload, NOW)


def test_a_forged_command_is_not_remembered() -> None:
    v = verifier()
    forged = sealed(body("c-1"), KeyPair.generate())
    reason(v, forged)
    assert v.seen.entries == {}
    assert v.window.ids == {}


def test_a_verified_command_is_recorded_until_its_expiry() -> None:
    seen = SeenCommands()
    v = Verifier(ME, [], KeyRing.from_config([SERVER.public_b64()]), ReplayWindow(), seen=seen)
    v.verify_command(sealed(body("c-1", 4, expires=NOW + 60)), NOW)
    assert v.seen is seen
    assert seen.entries["c-1"][0] > NOW + 60
    assert v.window.ids == {"c-1": NOW + 60}
    assert v.window.top == 4
    assert Verifier(ME, [], v.keys, ReplayWindow()).seen is not seen


# --- time replies -----------------------------------------------------------------------------------------


def reply(speaker: str = ME) -> TimeReply:
    return TimeReply(speaker, "ab" * 8, 1.0, 2.0, 3.0)


def test_a_time_reply_for_this_speaker_is_returned() -> None:
    assert verifier().verify_time_reply(protocol.encode_time_reply(reply(), SERVER), NOW) == reply()


def test_a_time_reply_for_another_speaker_or_signed_as_a_command_is_refused() -> None:
    for payload, expected in [
        (protocol.encode_time_reply(reply("spk-2"), SERVER), "not_addressed"),
        (sealed(protocol.dumps(reply().to_dict())), "bad_signature"),
        (sealed(protocol.dumps({"v": 1}), context=TIME_CONTEXT), "malformed"),
        (sealed("[1, 2]", context=TIME_CONTEXT), "malformed"),
        (protocol.encode_time_reply(reply(), KeyPair.generate()), "unknown_key"),
    ]:
        with pytest.raises(RejectedError) as info:
            verifier().verify_time_reply(payload, NOW)
        assert info.value.reason == expected


# --- what the server learns from a rejection --------------------------------------------------------------


def refusal(v: Verifier, payload: bytes, now: float = NOW) -> RejectedError:
    """The rejection `payload` earns."""
    with pytest.raises(RejectedError) as info:
        v.verify_command(payload, now)
    return info.value


def test_a_rejection_has_the_speaker_error_shape_in_both_languages() -> None:
    error = refusal(verifier(), sealed(body(expires=NOW - 1)))
    assert (error.code, error.kind) == ("speakers.rejected.expired", "forbidden")
    assert error.en == "Command rejected: expired"
    assert str(error) == error.en
    assert error.zh == "指令被拒绝：expired"
    assert RejectedError("unsigned").remembered is False


def test_ids_given_to_a_rejection_win_over_the_ids_its_message_claims() -> None:
    claims = trust._claims(protocol.dumps({"id": "c-claimed", "cmd": {"broadcast_id": "b-claimed"}}).encode())
    own = RejectedError("expired", command_id="c-own", broadcast_id="b-own")
    own.name(claims)
    assert (own.command_id, own.broadcast_id) == ("c-own", "b-own")
    bare = RejectedError("expired")
    bare.name(claims)
    assert (bare.command_id, bare.broadcast_id) == ("c-claimed", "b-claimed")


@pytest.mark.parametrize(
    ("payload", "details"),
    [
        (b"not json", {"problem": "not JSON"}),
        (b'"text"', {"problem": "not an object"}),
        (sealed(body(), v=2), {"version": 2}),
        (sealed(body(), kid="not-hex"), {"problem": "$.kid: must match pattern ^[0-9a-f]{16}$"}),
        (sealed(body(), KeyPair.generate()), "key_id"),
        (sealed(body(), sig="!" * 88), {"key_id": SERVER.key_id}),
        (sealed(body("c-9", 9, expires=NOW - 1.23456)), {"expired_s": 1.235}),
    ],
)
def test_a_rejection_reports_what_was_wrong(payload: bytes, details: dict[str, Any] | str) -> None:
    error = refusal(verifier(), payload)
    if details == "key_id":
        assert error.details == {"key_id": json.loads(payload)["kid"]}
    else:
        assert error.details == details


def test_a_replay_reports_its_sequence_and_the_window_top() -> None:
    v = verifier()
    v.verify_command(sealed(body("c-8", 8)), NOW)
    assert refusal(v, sealed(body("c-8b", 8))).details == {"seq": 8, "top": 8}


def test_a_retired_key_reports_which_key() -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    v = verifier(new, old)
    v.keys.keys[1].retire_at = NOW
    assert refusal(v, sealed(body(), old)).details == {"key_id": old.key_id}


def test_a_schema_break_reports_the_field_and_the_problem() -> None:
    broken = json.loads(body("c-1", cmd=Stop(broadcast_id="b-1")))
    broken["cmd"]["broadcast_id"] = 5
    assert refusal(verifier(), sealed(protocol.dumps(broken))).details == {
        "problem": "$.cmd.broadcast_id: must be string or null"}  # fmt: skip


def test_a_key_announcement_refusal_reports_the_key() -> None:
    current, older = KeyPair.generate(), KeyPair.generate()
    wrong = refusal(verifier(current, older), sealed(body("k-1", cmd=key_announcement(KeyPair.generate())), older))
    assert wrong.details == {"key_id": older.key_id}
    lying = KeyAnnouncement(public_key=KeyPair.generate().public_b64(), key_id=older.key_id)
    assert refusal(verifier(), sealed(body("k-2", cmd=lying))).details == {"problem": "key_id does not match the key"}


def test_an_announced_key_the_crypto_library_cannot_load_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    announced = KeyPair.generate()
    real = trust.public_key

    def refuse(b64: str) -> Any:
        if b64 == announced.public_b64():
            raise ValueError("not a point on the curve")
        return real(b64)

    monkeypatch.setattr(trust, "public_key", refuse)
    error = refusal(verifier(), sealed(body("k-1", cmd=key_announcement(announced))))
    assert (error.reason, error.command_id, error.details) == ("malformed", "k-1", {"problem": "bad public key"})


def test_the_default_clock_skew_allowance_is_five_minutes() -> None:
    v = Verifier(ME, [], KeyRing.from_config([SERVER.public_b64()]), ReplayWindow())
    assert v.verify_command(sealed(body("c-1", 1, issued=NOW + 300, expires=NOW + 400)), NOW).id == "c-1"
    assert refusal(v, sealed(body("c-2", 2, issued=NOW + 300.5, expires=NOW + 400))).reason == "not_yet_valid"


def test_a_body_with_an_unpaired_surrogate_is_refused_not_crashed_on() -> None:
    """JSON can escape a lone surrogate that UTF-8 cannot encode: no server signs it, so it is a forgery."""
    sig = base64.b64encode(b"\0" * 64).decode()
    for version, expected in ((1, "bad_signature"), (2, "unsupported_version")):
        envelope = {"v": version, "kid": SERVER.key_id, "sig": sig, "body": "\ud800{}"}
        payload = json.dumps(envelope).encode()  # ensure_ascii escapes the surrogate: valid JSON, not UTF-8
        assert refusal(verifier(), payload).reason == expected
        with pytest.raises(RejectedError) as info:
            verifier().verify_time_reply(payload, NOW)
        assert info.value.reason == expected


def test_handled_commands_are_remembered_until_their_expiry_and_grace() -> None:
    v = verifier()
    v.verify_command(sealed(body("c-1", 1, expires=NOW + 60)), NOW)
    refusal(v, sealed(body("c-2", 2, targets=("speaker:other",), expires=NOW + 90)))
    assert v.seen.entries["c-1"][0] == NOW + 60 + GRACE_S
    assert v.seen.entries["c-2"][0] == NOW + 90 + GRACE_S


def test_a_full_command_memory_first_forgets_what_has_expired() -> None:
    for refused in (False, True):
        v = verifier()
        v.seen.entries = {f"old-{i}": [NOW - 1, "d", None] for i in range(MAX_ENTRIES)}
        v.seen.entries["live"] = [NOW + 10, "d", None]
        payload = sealed(body("c-new", 1, targets=("speaker:other",) if refused else (f"speaker:{ME}",)))
        if refused:
            refusal(v, payload)
        else:
            v.verify_command(payload, NOW)
        assert sorted(v.seen.entries) == ["c-new", "live"]


def test_a_time_reply_signed_with_a_retired_key_is_refused() -> None:
    old, new = KeyPair.generate(), KeyPair.generate()
    v = verifier(new, old)
    v.keys.keys[1].retire_at = NOW
    with pytest.raises(RejectedError) as info:
        v.verify_time_reply(protocol.encode_time_reply(reply(), old), NOW)
    assert info.value.reason == "retired_key"


def test_a_broken_time_reply_reports_the_problem() -> None:
    with pytest.raises(RejectedError) as info:
        verifier().verify_time_reply(sealed(protocol.dumps({"v": 1}), context=TIME_CONTEXT), NOW)
    assert info.value.details == {"problem": "$: must contain ['nonce', 'speaker_id', 't1', 't2', 't3'] properties"}
    with pytest.raises(RejectedError) as info:
        verifier().verify_time_reply(sealed("{oops", context=TIME_CONTEXT), NOW)
    assert info.value.details["problem"].startswith("Expecting property name")


def test_byte_identical_messages_are_parsed_once_for_all_speakers_in_a_process() -> None:
    payload = sealed(body("c-shared"))
    assert trust._envelope(payload) is trust._envelope(payload)
    trust._PARSED.clear()
    sizes = []
    for i in range(trust._PARSED_MAX + 2):
        trust._memo(f'{{"id": "m{i}"}}'.encode(), trust._claims)
        sizes.append(len(trust._PARSED))
    assert max(sizes) == trust._PARSED_MAX
    assert sizes[-1] == 2


# --- shared signature checks (the fleet simulator's --shared-verify) ----------------------------------------


class CountingKey:
    """A trusted key that counts its Ed25519 checks (wraps the real key: same answers)."""

    def __init__(self, key: Any) -> None:
        self.key, self.raw, self.key_id, self.checks = key, key.raw, key.key_id, 0

    def verify(self, context: bytes, body: bytes, signature: bytes) -> bool:
        self.checks += 1
        return bool(self.key.verify(context, body, signature))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> CountingKey:
    """The server's key, as every verifier of this process finds it, counting its checks; sharing reset after."""
    counting = CountingKey(public_key(SERVER.public_b64()))
    original = KeyRing.find

    def find(self: KeyRing, key_id: str) -> Any:
        found = original(self, key_id)
        return None if found is None else trust.TrustedKey(counting, found.retire_at)  # type: ignore[arg-type]

    monkeypatch.setattr(KeyRing, "find", find)
    yield counting
    trust.share_verifications(False)


def test_each_speaker_checks_the_signature_itself_by_default(counted: CountingKey) -> None:
    payload = sealed(body("c-each", targets=("region:g-1",)))
    for _ in range(3):
        assert verifier().verify_command(payload, NOW).id == "c-each"
    assert counted.checks == 3


def test_shared_checks_verify_byte_identical_commands_once_and_still_refuse_a_forgery(counted: CountingKey) -> None:
    trust.share_verifications(True)
    text = body("c-shared-sig", targets=("region:g-1",))
    payload = sealed(text)
    speakers = [verifier() for _ in range(4)]
    assert [v.verify_command(payload, NOW).id for v in speakers] == ["c-shared-sig"] * 4
    assert counted.checks == 1  # one Ed25519 check for four speakers given the same bytes
    # The same body under a signature of another key, and a changed body under the genuine signature: each is
    # checked in full (a success is remembered by its exact bytes, a failure never) and refused every time.
    forged = sealed(text, KeyPair.generate(), kid=SERVER.key_id)
    genuine_sig = json.loads(payload)["sig"]
    altered = protocol.dumps(
        {"v": 1, "kid": SERVER.key_id, "sig": genuine_sig, "body": text.replace("c-shared-sig", "c-shared-sih")}
    ).encode()
    for bad in (forged, altered, forged):
        assert reason(verifier(), bad) == "bad_signature"
    assert counted.checks == 4
    # Each speaker still keeps its own record of what it took: the same bytes again are a duplicate to it.
    with pytest.raises(DuplicateCommand):
        speakers[0].verify_command(payload, NOW)
