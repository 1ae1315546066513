"""The snapshot's keep list: optional on the wire, checked by the schema, and pinned in the cache while listed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from speakers import protocol
from speakers.agent.cache import MediaCache
from speakers.agent.keep import KeptMedia
from speakers.messages import KeepMedia, ScheduleSnapshot
from speakers.schema import SchemaError

SHA = "b" * 64


def test_keep_is_optional_and_round_trips() -> None:
    bare = ScheduleSnapshot("s1", 1.0, 2.0)
    assert "keep" not in bare.to_dict(), "a snapshot without a keep list is byte-identical to before"
    protocol.check_command("schedule", bare.to_dict())
    kept = ScheduleSnapshot("s2", 1.0, 2.0, keep=(KeepMedia(SHA, "http://m/media/tone.mp3", 8000),))
    protocol.check_command("schedule", kept.to_dict())
    assert ScheduleSnapshot.from_dict(kept.to_dict()) == kept


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"sha256": "XYZ", "media_url": "http://m/t.mp3", "duration_ms": 1}, "$.keep[0].sha256"),
        ({"sha256": SHA, "media_url": "file:///etc/passwd", "duration_ms": 1}, "$.keep[0].media_url"),
        ({"sha256": SHA, "media_url": "http://m/t.mp3"}, "$.keep[0]"),
    ],
)
def test_a_bad_keep_entry_is_refused_naming_it(entry: dict, where: str) -> None:
    body = {**ScheduleSnapshot("s1", 1.0, 2.0).to_dict(), "keep": [entry]}
    with pytest.raises(SchemaError) as exc:
        protocol.check_command("schedule", body)
    assert exc.value.path.startswith(where)


def _put(cache: MediaCache, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    cache.store_bytes(sha, data)
    return sha


def test_listed_media_is_never_evicted_and_unlisted_media_may_be(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "cache", cap_bytes=3000)
    kept = KeptMedia(SimpleNamespace())  # type: ignore[arg-type]  # pinning needs no agent
    cache.pinned = kept.hashes
    tone = _put(cache, b"t" * 1000)
    kept.load([{"sha256": tone, "media_url": "http://m/tone.mp3", "duration_ms": 8000}])
    for n in range(5):  # the least recently used file is the tone, yet it stays
        _put(cache, bytes([n]) * 1000)
    assert cache.has(tone)
    kept.replace(())  # a snapshot that no longer lists it
    _put(cache, b"z" * 1000)
    assert not cache.has(tone)
    assert kept.to_list() == []
