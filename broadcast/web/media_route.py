"""Serving stored clips to speakers and the console: signed URLs, or a logged-in console user."""

from __future__ import annotations

import re

from flask import Flask, Response, g, request, send_file

from broadcast import media_urls
from broadcast.errors import BroadcastError, not_found
from broadcast.web.context import platform

NAME = re.compile(r"^([0-9a-f]{64})\.(mp3|opus|ogg)$")


def serve(name: str) -> Response:
    """Send one clip file (with Range support, so a speaker can resume a download)."""
    match = NAME.match(name)
    if not match:
        raise not_found("音频", "Clip", name)
    secret = platform().settings["SECRET_KEY"]
    signed = media_urls.verify(secret, name, request.args.get("e"), request.args.get("s"))
    if not signed and g.get("user") is None:
        raise BroadcastError(
            "media_forbidden", "音频链接无效或已过期。", "The media link is invalid or expired.", kind="forbidden"
        )
    store = platform().media_store
    sha256, ext = match.groups()
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
