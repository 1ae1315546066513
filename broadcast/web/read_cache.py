"""API reads answered from a per-process cache for up to READ_CACHE_S seconds, keyed by caller and URL.

A key holds the caller's user id, role and region with the full path and query, so one user's answer is
never another's (a scoped user never sees an answer made for a wider scope). Any commit this process makes
drops every entry (broadcast.web.caches), so a write is seen by the next read here; another process's write
is seen within READ_CACHE_S. Only 200 answers are kept; errors (the only answers in the client's language)
are made afresh each time.

A miss reads as the caller's principal (a `Caller` in g.user: id, role, region), not the ORM user: the views
behind it only scope by those, and the principal is as fresh as the token cache (security.TOKEN_CACHE_S).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, make_response, request
from werkzeug.http import quote_etag

from broadcast.services.broadcasts import Caller
from broadcast.web import caches
from broadcast.web.security import authenticate

F = TypeVar("F", bound=Callable[..., Any])
READ_CACHE_S = 1.0
READ_CACHE_BYTES = 32 * 1024 * 1024  # per process; a full cache starts again
CACHE_CONTROL = "private, no-cache"  # a client may keep an answer but asks again (If-None-Match: 304)


def _answer(body: bytes, etag: str) -> Response:
    headers = [("Cache-Control", CACHE_CONTROL), ("ETag", quote_etag(etag))]
    if "If-None-Match" in request.headers and request.if_none_match.contains_weak(etag):
        return current_app.response_class(status=304, headers=headers)
    return current_app.response_class(body, headers=headers, mimetype="application/json")


def _cache() -> caches.TtlCache[tuple[bytes, str]]:
    cache = current_app.extensions.get("api_reads")
    if cache is None:  # made on first use: the app factory needs no hook for it
        cache = current_app.extensions["api_reads"] = caches.TtlCache(READ_CACHE_S, READ_CACHE_BYTES)
    return cache


def cached_read(view: F) -> F:
    """Like api_auth, for a GET view whose answer depends only on the caller and the URL: served from the cache."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        principal = authenticate()
        cache = _cache()
        key = (principal.user_id, principal.role, principal.region_code, request.full_path)
        found = cache.get(key)
        if found is None:
            made_in = caches.generation()
            if g.get("auth_kind") == "token":  # a console session's g.user is its ORM user already
                g.user = Caller(principal.user_id, principal.role, principal.region_code)
            response = make_response(view(*args, **kwargs))
            if response.status_code != 200:
                return response
            body = response.get_data()
            found = (body, hashlib.blake2b(body, digest_size=12).hexdigest())
            cache.put(key, found, made_in, size=len(body))
        return _answer(*found)

    return wrapped  # type: ignore[return-value]
