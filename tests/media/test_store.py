"""MediaStore: content addressing, atomic puts, lookups and deletes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from media import MediaError, MediaStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path, store: MediaStore) -> None:
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(100))
    sha = store.put_file(src)
    assert sha == hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.exists(sha)
    assert store.path(sha).read_bytes() == src.read_bytes()
    assert store.path(sha).suffix == ".mp3"
    assert store.put_file(src) == sha
    assert store.hashes() == [sha]
    assert not list(store.path(sha).parent.glob(".put-*")), "no temp file left beside the clip"


def test_missing_and_malformed_hashes(store: MediaStore) -> None:
    for bad in ("0" * 64, "../../etc/passwd", "", "g" * 64):
        assert not store.exists(bad)
        with pytest.raises(MediaError) as caught:
            store.path(bad)
        assert caught.value.code == "media.not_found"
        assert caught.value.kind == "not_found"


def test_delete(tmp_path: Path, store: MediaStore) -> None:
    src = tmp_path / "b.ogg"
    src.write_bytes(b"OggS" + bytes(50))
    sha = store.put_file(src)
    assert store.path(sha).suffix == ".opus"
    store.delete(sha)
    assert not store.exists(sha)
    store.delete(sha)  # already gone: no error


def _fail_inside_workdir(store: MediaStore) -> None:
    with store.workdir() as work:
        (work / "x").write_bytes(b"1")
        raise RuntimeError("boom")


def test_workdir_is_removed_even_on_error(store: MediaStore) -> None:
    with pytest.raises(RuntimeError):
        _fail_inside_workdir(store)
    assert list(store.tmp_root.iterdir()) == []
