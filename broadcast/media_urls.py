"""Signed, expiring media URLs: a speaker can fetch a clip, a stranger cannot download an unreleased notice."""

from __future__ import annotations

import hashlib
import hmac
import time

EXTENSIONS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "ogg": "audio/ogg"}


def _mac(secret: str, name: str, expires: int) -> str:
    key = hashlib.sha256(b"media-url:" + secret.encode()).digest()
    return hmac.new(key, f"{name}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_path(secret: str, sha256: str, ext: str, ttl_s: int, *, now: float | None = None) -> str:
    """The path and query of a media file, valid for ttl_s seconds."""
    expires = int((now if now is not None else time.time()) + ttl_s)
    name = f"{sha256}.{ext}"
    return f"/media/{name}?e={expires}&s={_mac(secret, name, expires)}"


def verify(secret: str, name: str, expires: str | None, signature: str | None, *, now: float | None = None) -> bool:
    """True when the signature matches the file name and the URL has not expired."""
    if not expires or not signature or not expires.isdigit():
        return False
    if int(expires) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(_mac(secret, name, int(expires)), signature)
