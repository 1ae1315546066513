"""Media cache of the speaker: fetch by URL ahead of time, resume interrupted downloads with HTTP Range,
verify SHA-256, keep files by hash under an LRU size cap (never evicting what is still scheduled).

A cached file is checked again whenever it is loaded for playback (`verify`): cheaply, by remembering the
(size, mtime, ctime, inode) it had when its hash last matched, and re-hashing when any of them changed. A
file changed in place, or swapped for another, therefore never plays under a hash it does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Collection
from pathlib import Path

from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 64 * 1024


def _fetch_error(code: str, zh: str, en: str, **details: object) -> SpeakerError:
    return SpeakerError(code, zh, en, kind="unavailable", **details)


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is written, replaced or touched (ctime cannot be set back by anyone)."""
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def corrupt_error(sha256: str) -> SpeakerError:
    """The error of a cached file whose content no longer has its hash."""
    return SpeakerError(
        "speakers.cache_corrupt",
        f"缓存的媒体文件 {sha256[:12]} 已损坏或被替换，将重新下载。",
        f"The cached media file {sha256[:12]} is corrupt or was replaced; it will be fetched again.",
        kind="invalid",
        sha256=sha256,
    )


class _Partial(Exception):  # noqa: N818  (internal signal, never leaves this module)
    """A cut connection delivered these bytes before failing."""

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data))
        self.data = data


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class MediaCache:
    """Files named by their SHA-256 in one folder, with an LRU size cap."""

    def __init__(
        self,
        directory: Path,
        cap_bytes: int,
        *,
        timeout_s: float = 30.0,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        attempts: int = 4,
        retry_delay_s: float = 0.5,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cap_bytes = cap_bytes
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self._ssl = ssl_context or (ssl.create_default_context(cafile=ca_file) if ca_file else None)
        self._index: OrderedDict[str, int] = OrderedDict()  # sha -> size, least recently used first
        self._verified: dict[str, tuple[int, int, int, int]] = {}  # sha -> stat key when its hash last matched
        self._inflight: dict[str, asyncio.Future[Path]] = {}
        self.pinned: Callable[[], Collection[str]] = frozenset  # hashes that must stay (set by the agent)
        self._scan()

    def _scan(self) -> None:
        files = [p for p in self.directory.iterdir() if _HEX64.match(p.name)]
        files.sort(key=lambda p: p.stat().st_mtime)
        for path in files:
            self._index[path.name] = path.stat().st_size

    @property
    def size_bytes(self) -> int:
        """Bytes held by complete cached files."""
        return sum(self._index.values())

    def path_for(self, sha256: str) -> Path:
        """Where the file with this hash lives once cached."""
        return self.directory / sha256

    def has(self, sha256: str) -> bool:
        """True when the file is cached (complete and verified)."""
        return sha256 in self._index

    def touch(self, sha256: str) -> None:
        """Mark as recently used (a file verified before stays verified: touching changes its times)."""
        if sha256 in self._index:
            self._index.move_to_end(sha256)
            path = self.path_for(sha256)
            with contextlib.suppress(OSError):
                was_verified = self._verified.get(sha256) == _stat_key(path)
                os.utime(path)
                if was_verified:
                    self._verified[sha256] = _stat_key(path)

    def verify(self, sha256: str) -> Path:
        """Return the cached file if its content still has this hash (re-hashed only when its stat changed).

        Thread-safe; call it before reading the file for playback.

        Raises:
            SpeakerError: code `speakers.cache_corrupt` when the file is gone, changed or replaced.
        """
        path = self.path_for(sha256)
        try:
            key = _stat_key(path)
        except OSError:
            raise corrupt_error(sha256) from None
        if self._verified.get(sha256) == key:
            return path
        if file_sha256(path) != sha256:
            self._verified.pop(sha256, None)
            logger.warning("cached media %s does not match its hash", sha256[:12])
            raise corrupt_error(sha256)
        self._verified[sha256] = key
        return path

    def discard(self, sha256: str) -> None:
        """Delete a cached file (found corrupt): the next fetch downloads it again."""
        self._index.pop(sha256, None)
        self._verified.pop(sha256, None)
        self.path_for(sha256).unlink(missing_ok=True)

    def store_bytes(self, sha256: str, data: bytes) -> Path:
        """Put media that came inline (in the command) into the cache, if it has the hash it claims.

        Raises:
            SpeakerError: code `speakers.hash_mismatch` when it does not.
        """
        if not _HEX64.match(sha256) or hashlib.sha256(data).hexdigest() != sha256:
            raise SpeakerError(
                "speakers.hash_mismatch",
                "指令内嵌的媒体与其哈希不符。",
                "The inline media does not match the command's hash.",
                kind="invalid",
            )
        self._check_size(len(data))
        part = self.directory / f"{sha256}.inline"
        with open(part, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, self.path_for(sha256))
        self._register(sha256)
        return self.path_for(sha256)

    async def fetch(self, url: str, sha256: str) -> Path:
        """Return the cached file, downloading it first if needed (one download per hash at a time)."""
        if sha256 in self._index:
            self.touch(sha256)
            return self.path_for(sha256)
        return await asyncio.shield(self.fetch_future(url, sha256))

    def fetch_future(self, url: str, sha256: str) -> asyncio.Future[Path]:
        """A future of the download of `sha256`, shared by everyone who asks while it runs."""
        future = self._inflight.get(sha256)
        if future is None:
            future = asyncio.ensure_future(self._fetch_and_register(url, sha256))
            self._inflight[sha256] = future
            future.add_done_callback(lambda _f: self._inflight.pop(sha256, None))
        return future

    async def _fetch_and_register(self, url: str, sha256: str) -> Path:
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, self.download, url, sha256)
        self._register(sha256)
        return path

    def fetch_sync(self, url: str, sha256: str) -> Path:
        """Blocking fetch for use outside an event loop."""
        if sha256 in self._index:
            self.touch(sha256)
            return self.path_for(sha256)
        path = self.download(url, sha256)
        self._register(sha256)
        return path

    def download(self, url: str, sha256: str) -> Path:
        """Download with resume and verification into the cache folder (thread-safe; no index change).

        A lock file keeps two processes sharing the folder (a simulator's workers) off the same `.part`.
        """
        if not _HEX64.match(sha256):
            raise SpeakerError("speakers.bad_hash", "媒体哈希不合法。", "Invalid media hash.")
        with open(self.directory / f"{sha256}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                final = self.path_for(sha256)
                if final.exists() and file_sha256(final) == sha256:
                    return final  # another process fetched it meanwhile
                return self._download_verified(url, sha256)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _download_verified(self, url: str, sha256: str) -> Path:
        part = self.directory / f"{sha256}.part"
        restarted = False
        for attempt in range(1, self.attempts + 1):
            had = part.stat().st_size if part.exists() else 0
            try:
                self._download(url, part)
            except SpeakerError:
                raise
            except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
                logger.info("download of %s interrupted (attempt %d): %s", sha256[:12], attempt, exc)
                got = (part.stat().st_size if part.exists() else 0) - had
                # resuming helps only a download that moved; a server that is down is left to the caller's
                # backoff (the agent retries while the play's start window is open)
                if attempt == self.attempts or got <= 0:
                    raise _fetch_error(
                        "speakers.fetch_failed", f"媒体下载失败：{exc}", f"Media download failed: {exc}", url=url
                    ) from exc
                time.sleep(self.retry_delay_s * attempt)
                continue
            actual = file_sha256(part)
            if actual == sha256:
                break
            part.unlink(missing_ok=True)
            if restarted or attempt == self.attempts:
                raise SpeakerError(
                    "speakers.hash_mismatch",
                    "下载的媒体与指令中的哈希不符，已丢弃。",
                    "The downloaded media does not match the command's hash; discarded.",
                    kind="invalid",
                    expected=sha256,
                    actual=actual,
                )
            restarted = True  # a resumed file may have been spliced from a changed source: retry whole
        final = self.path_for(sha256)
        os.replace(part, final)
        logger.info("cached %s (%d bytes)", sha256[:12], final.stat().st_size)
        return final

    def _register(self, sha256: str) -> None:
        """Index a file just written and verified by this process."""
        key = _stat_key(self.path_for(sha256))
        self._verified[sha256] = key
        self._index[sha256] = key[0]
        self._index.move_to_end(sha256)
        self.evict(keep=sha256)

    def _download(self, url: str, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310  (http/https only: schema-checked)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s, context=self._ssl)  # noqa: S310
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                return  # nothing left to fetch: the part is complete (the hash decides)
            if 400 <= exc.code < 500:
                raise _fetch_error(
                    "speakers.fetch_refused",
                    f"媒体服务器拒绝了请求（HTTP {exc.code}）。",
                    f"The media server refused the request (HTTP {exc.code}).",
                    status=exc.code,
                ) from exc
            raise
        with response:
            resumed = offset and response.status == 206
            with open(part, "ab" if resumed else "wb") as fh:
                if offset and not resumed:
                    logger.info("server ignored Range for %s; downloading from the start", part.name)
                try:
                    while chunk := self._read(response):
                        fh.write(chunk)
                        self._check_size(fh.tell())
                except _Partial as cut:
                    fh.write(cut.data)
                    fh.flush()
                    os.fsync(fh.fileno())
                    raise http.client.IncompleteRead(cut.data) from None
                fh.flush()
                os.fsync(fh.fileno())
            if response.length:  # the connection ended before Content-Length: resume next time
                raise http.client.IncompleteRead(b"", response.length)

    def _check_size(self, size: int) -> None:
        if size > self.cap_bytes:
            raise SpeakerError(
                "speakers.media_too_large",
                "媒体文件超过缓存容量。",
                "The media file is larger than the cache.",
                kind="too_large",
                cap_bytes=self.cap_bytes,
            )

    @staticmethod
    def _read(response: http.client.HTTPResponse) -> bytes:
        """Read a chunk; on a cut connection keep what did arrive (it is resumed from there)."""
        try:
            return response.read(_CHUNK)
        except http.client.IncompleteRead as exc:
            if exc.partial:
                raise _Partial(exc.partial) from exc
            raise

    def evict(self, keep: str | None = None) -> list[str]:
        """Drop least recently used files until under the cap; pinned hashes and `keep` stay."""
        pinned = set(self.pinned())
        if keep:
            pinned.add(keep)
        dropped: list[str] = []
        total = self.size_bytes
        for sha in list(self._index):
            if total <= self.cap_bytes:
                break
            if sha in pinned:
                continue
            total -= self._index.pop(sha)
            self._verified.pop(sha, None)
            self.path_for(sha).unlink(missing_ok=True)
            (self.directory / f"{sha}.lock").unlink(missing_ok=True)
            dropped.append(sha)
        if dropped:
            logger.info("evicted %d cached file(s)", len(dropped))
        return dropped
