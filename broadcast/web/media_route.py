"""Serving stored clips: signed URLs (speakers), or a user (console session or API token) who may use the clip."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, g, request, send_file

from broadcast import media_urls
from broadcast.errors import BroadcastError, not_found
from broadcast.services import accounts, clips
from broadcast.web.context import db, platform

logger = logging.getLogger(__name__)
NAME = re.compile(r"^([0-9a-f]{64})\.(mp3|opus|ogg)$")
FORBIDDEN = BroadcastError(
    "media_forbidden", "音频链接无效或已过期。", "The media link is invalid or expired.", kind="forbidden"
)


def _bearer_user() -> None:
    header = request.headers.get("Authorization", "")
    if g.get("user") is None and header.startswith("Bearer "):
        user = accounts.user_for_token(db(), header[7:].strip())
        if user is not None:
            if db().dirty:
                db().commit()
            g.user = user


def serve(name: str) -> Response:
    """Send one clip file (with Range support, so a speaker can resume a download)."""
    match = NAME.match(name)
    if not match:
        raise not_found("音频", "Clip", name[:80])
    sha256, ext = match.groups()
    secret = platform().settings["SECRET_KEY"]
    expires, signature = request.args.get("e"), request.args.get("s")
    if not (expires or "").isascii() or not (signature or "").isascii():
        expires = signature = None  # not a signature we issued (and compare_digest refuses non-ASCII text)
    signed = media_urls.verify(secret, name, expires, signature)
    if not signed:
        _bearer_user()
        if g.get("user") is None:
            raise FORBIDDEN
        if not clips.usable_file(db(), sha256, g.user):  # the same rule as GET /clips/<id>: unseen is unknown
            raise not_found("音频", "Clip", name)
    store = platform().media_store
    if not store.exists(sha256):
        raise not_found("音频", "Clip", name)
    response = send_file(
        store.path(sha256), mimetype=media_urls.EXTENSIONS[ext], conditional=True, etag=sha256, max_age=86400
    )
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


def init_app(app: Flask) -> None:
    """Register the media route."""
    app.add_url_rule("/media/<name>", "media", serve)
