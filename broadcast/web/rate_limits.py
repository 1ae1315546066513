"""Rate limits: API reads and writes per token (or console user, or address), login posts per address.

The counting is the `limits` library's fixed-window strategy on the storage RATE_LIMIT_STORAGE names (Redis to
share counters between processes and hosts; empty: this process, `process://`). It is called directly, not
through Flask-Limiter: that extension resolved and re-parsed every limit on every request, 40 % of a cached
API read (docs/benchmarks.md, issue 11), while these three limits need one dictionary lookup to pick.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from flask import Flask, Response, current_app, make_response, request, session
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from broadcast.errors import BroadcastError
from broadcast.web.context import client_address
from broadcast.web.errors import respond
from broadcast.web.rate_counters import ProcessCounters

logger = logging.getLogger(__name__)
UNLIMITED_PATHS = ("/api/v1/time", "/api/v1/openapi.json")
API_SCOPES = {"GET": "r", "POST": "w", "PUT": "w", "PATCH": "w", "DELETE": "w"}
KEY_PREFIX = "vb"


class RateLimits:
    """The deployment's limits and the counter storage they are kept in."""

    def __init__(self, settings: dict[str, str]) -> None:
        storage = storage_from_string(settings["RATE_LIMIT_STORAGE"] or ProcessCounters.STORAGE_SCHEME[0] + "://")
        self.counter = FixedWindowRateLimiter(storage)
        self.groups: dict[str, list[RateLimitItem]] = {
            "r": parse_many(settings["API_READ_RATE_LIMIT"]),
            "w": parse_many(settings["API_RATE_LIMIT"]),
            "login": parse_many(settings["LOGIN_RATE_LIMIT"]),
        }
        self.enabled = True  # the benchmark switches it off to measure its cost

    def hit(self, scope: str, key: str) -> Response | None:
        """Count one request against every limit of `scope`; the 429 answer when one is exceeded."""
        for item in self.groups[scope]:
            if not self.counter.hit(item, KEY_PREFIX, scope, key):
                stats = self.counter.get_window_stats(item, KEY_PREFIX, scope, key)
                return _breached(item, stats.reset_time, key)
        return None


def rate_key() -> str:
    """Who a request counts against: its API token, else its console user, else its address."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return "token:" + hashlib.sha256(header[7:].strip().encode()).hexdigest()[:32]
    user_key = session.get("_user_id")
    if isinstance(user_key, str):
        return "user:" + user_key.partition(":")[0]
    return "address:" + client_address()


def _breached(item: RateLimitItem, reset_at: float, key: str) -> Response:
    """A refused request: the one error shape, status 429 and when to come back (Retry-After)."""
    wait = min(max(1, math.ceil(reset_at - time.time())), item.get_expiry())
    logger.warning("rate limit %s reached by %s on %s", item, key, request.path)
    error = BroadcastError(
        "rate_limited",
        f"请求过于频繁，请 {wait} 秒后再试。",
        f"Too many requests; try again in {wait} seconds.",
        kind="rate_limited",
        retry_after_s=wait,
    )
    response = make_response(respond(error, 429))
    response.headers["Retry-After"] = str(wait)
    return response


def check_limits() -> Response | None:
    """Before a view: count the request against its limit (API by method, the login form); 429 when exceeded."""
    limits: RateLimits = current_app.extensions["rate_limiter"]
    if not limits.enabled or request.endpoint is None:
        return None  # an unknown route is answered 404 without counting
    path = request.path
    if path.startswith("/api/") and path not in UNLIMITED_PATHS:
        scope = API_SCOPES.get(request.method)
        return limits.hit(scope, rate_key()) if scope is not None else None
    if request.endpoint == "console.login" and request.method == "POST":
        return limits.hit("login", client_address())
    return None


def init_app(app: Flask) -> None:
    """Count every API request and login post (after the input checks, so a refused body is not counted)."""
    app.extensions["rate_limiter"] = RateLimits(app.extensions["platform"].settings)
    app.before_request(check_limits)
