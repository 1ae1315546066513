"""Content-addressed media storage on local disk, crash-safe (temp file, fsync, os.replace)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import errors
from .sniff import detect_format

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# stored file extension by detected content format
_EXTENSIONS = {"mp3": ".mp3", "ogg": ".opus", "wav": ".wav", "flac": ".flac", "m4a": ".m4a", "webm": ".webm"}
_TMP = "tmp"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class MediaStore:
    """Files named by the sha256 of their bytes under ROOT/ab/<sha256>.<ext>; temp work under ROOT/tmp."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_root = self.root / _TMP
        self.tmp_root.mkdir(exist_ok=True)

    def _candidates(self, sha256: str) -> Iterator[Path]:
        if not _HEX64.match(sha256):
            return
        folder = self.root / sha256[:2]
        for ext in (*dict.fromkeys(_EXTENSIONS.values()), ".bin"):
            yield folder / f"{sha256}{ext}"

    def path(self, sha256: str) -> Path:
        """Where the file with this hash lives; raises MediaError(not_found) when absent."""
        for candidate in self._candidates(sha256):
            if candidate.is_file():
                return candidate
        raise errors.not_found(sha256)

    def exists(self, sha256: str) -> bool:
        """True when a file with this hash is stored."""
        return any(c.is_file() for c in self._candidates(sha256))

    def put_file(self, src: Path) -> str:
        """Copy SRC into the store atomically under its sha256 and return the hash (idempotent)."""
        src = Path(src)
        sha = file_sha256(src)
        with src.open("rb") as f:
            fmt = detect_format(f.read(64 * 1024)) or "bin"
        dest_dir = self.root / sha[:2]
        dest = dest_dir / f"{sha}{_EXTENSIONS.get(fmt, '.bin')}"
        if dest.is_file():
            return sha
        dest_dir.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest_dir)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info("stored %s (%d bytes)", dest.name, dest.stat().st_size)
        return sha

    def delete(self, sha256: str) -> None:
        """Remove the file with this hash (no error when it is already gone)."""
        for candidate in self._candidates(sha256):
            candidate.unlink(missing_ok=True)

    def hashes(self) -> list[str]:
        """Hashes of every stored file."""
        return sorted(p.stem for p in self.root.glob("??/*") if p.is_file() and _HEX64.match(p.stem))

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A fresh temp directory under the store root (same filesystem), removed on every path."""
        path = Path(tempfile.mkdtemp(dir=self.tmp_root, prefix="job-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
