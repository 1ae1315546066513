"""Server keys: generation, storage, ids, signatures bound to their context."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from speakers.errors import SpeakerError
from speakers.signing import COMMAND_CONTEXT, TIME_CONTEXT, KeyPair, PublicKey, key_id_for


def test_save_and_load_round_trip_with_private_mode(tmp_path: Path) -> None:
    key = KeyPair.generate()
    path = tmp_path / "keys" / "server.pem"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = KeyPair.load(path)
    assert loaded.key_id == key.key_id
    assert loaded.public_b64() == key.public_b64()
    assert not list(path.parent.glob(".*tmp")), "no temp file left behind"


def test_key_id_is_stable_and_derived_from_the_public_key() -> None:
    key = KeyPair.generate()
    assert key.key_id == key_id_for(key.public_raw())
    assert len(key.key_id) == 16
    assert PublicKey.from_b64(key.public_b64()).key_id == key.key_id
    assert KeyPair.generate().key_id != key.key_id


def test_signature_is_bound_to_context_and_body() -> None:
    key = KeyPair.generate()
    public = key.public_key()
    sig = key.sign(COMMAND_CONTEXT, b"body")
    assert public.verify(COMMAND_CONTEXT, b"body", sig)
    assert not public.verify(TIME_CONTEXT, b"body", sig), "a command signature must not pass as a time reply"
    assert not public.verify(COMMAND_CONTEXT, b"bodY", sig)
    assert not KeyPair.generate().public_key().verify(COMMAND_CONTEXT, b"body", sig)


def test_load_errors_are_speaker_errors(tmp_path: Path) -> None:
    with pytest.raises(SpeakerError) as missing:
        KeyPair.load(tmp_path / "absent.pem")
    assert missing.value.kind == "not_found"
    assert missing.value.zh
    assert missing.value.en
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(SpeakerError) as bad:
        KeyPair.load(junk)
    assert bad.value.code == "speakers.bad_key"


def test_public_key_rejects_bad_input() -> None:
    with pytest.raises(SpeakerError):
        PublicKey.from_b64("%%%")
    with pytest.raises(SpeakerError):
        PublicKey(b"short")
