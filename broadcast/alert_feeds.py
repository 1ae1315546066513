"""Polling Atom/RSS feeds of CAP entries into the same ingest path as POST /api/v1/alerts; stalls raise alarms.

The worker calls `poll_due(platform)` every few seconds; each feed is fetched when its interval has passed.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlparse
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from sqlalchemy import select

from broadcast.alerts import MAX_BYTES, AlertError, cap
from broadcast.alerts.cap import NAMESPACES
from broadcast.errors import BroadcastError
from broadcast.models import Alert, FeedState
from broadcast.services import alerts, audit

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
ATOM = "{http://www.w3.org/2005/Atom}"
MAX_FEED_BYTES = 2 * 1024 * 1024
FETCH_TIMEOUT_S = 10.0
SEEN_KEPT = 500
ACCEPT = "application/atom+xml, application/rss+xml, application/cap+xml, application/xml;q=0.9, */*;q=0.1"
CAP_TAGS = {"{" + ns + "}alert" for ns in NAMESPACES}


@dataclass(frozen=True)
class Feed:
    """One configured feed: its URL, poll interval and credentials (HTTP Basic or a bearer token)."""

    url: str
    interval_s: float = 60.0
    username: str | None = None
    password: str | None = None
    token: str | None = None


@dataclass
class Entry:
    """One feed entry: an id, and the CAP message inline or at a link."""

    id: str
    inline: bytes | None = None
    link: str | None = None


@dataclass
class PollResult:
    """What one poll of one feed did."""

    url: str
    ok: bool
    taken: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def feed_error(zh: str, en: str) -> AlertError:
    """A feed that cannot be read or is not a feed of CAP entries."""
    return AlertError("feed_error", f"预警订阅源异常：{zh}", f"Warning feed fault: {en}", kind="unavailable")


def parse_feeds(text: str) -> list[Feed]:
    """Feeds from the ALERT_FEEDS setting: a JSON list of {url, interval_s?, username?, password?, token?}."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AlertError(
            "invalid_feeds", f"ALERT_FEEDS 不是有效的 JSON（{exc}）。", f"ALERT_FEEDS: bad JSON ({exc})."
        ) from None
    if not isinstance(data, list):
        raise AlertError("invalid_feeds", "ALERT_FEEDS 必须是列表。", "ALERT_FEEDS must be a JSON list.")
    feeds = []
    for row in data:
        url = row.get("url") if isinstance(row, dict) else None
        if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
            raise AlertError("invalid_feeds", "每个订阅源需要 http(s) 地址 url。", "Each feed needs an http(s) url.")
        interval = row.get("interval_s", 60)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 5:
            raise AlertError("invalid_feeds", "interval_s 至少 5 秒。", "interval_s must be at least 5 seconds.")
        creds = {k: row.get(k) for k in ("username", "password", "token")}
        feeds.append(Feed(url=url, interval_s=float(interval), **{k: str(v) for k, v in creds.items() if v}))
    return feeds


def fetch(url: str, feed: Feed, limit: int) -> bytes:
    """GET a URL with the feed's credentials (only on the feed's own host), at most `limit` bytes."""
    if urlparse(url).scheme not in ("http", "https"):
        raise feed_error(f"不支持的地址 {url[:80]}", f"unsupported URL {url[:80]}")
    request = urllib.request.Request(url, headers={"Accept": ACCEPT})  # noqa: S310 - http(s) checked above
    if urlparse(url).netloc == urlparse(feed.url).netloc:
        if feed.token:
            request.add_header("Authorization", f"Bearer {feed.token}")
        elif feed.username:
            pair = f"{feed.username}:{feed.password or ''}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) checked above
            data = response.read(limit + 1)
    except OSError as exc:  # connection refused, timeouts, HTTP errors (HTTPError is an OSError)
        raise feed_error(f"无法读取 {url[:80]}（{exc}）", f"cannot fetch {url[:80]} ({exc})") from None
    if len(data) > limit:
        raise feed_error(f"{url[:80]} 的内容过大", f"{url[:80]} answered more than {limit} bytes")
    return data


def entries(data: bytes, base_url: str) -> list[Entry]:
    """The entries of an Atom or RSS document, each with its CAP inline or linked."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError) as exc:
        raise feed_error(
            f"返回的不是有效的 XML（{type(exc).__name__}）", f"answered garbage, not XML ({exc})"
        ) from None
    if root.tag in CAP_TAGS:  # a feed URL may also serve one CAP message directly
        return [Entry(id="", inline=data)]
    if root.tag == ATOM + "feed":
        return [_atom_entry(e, base_url) for e in root.iter(ATOM + "entry")]
    if root.tag == "rss":
        return [_rss_item(e, base_url) for e in root.iter("item")]
    raise feed_error(f"根元素 {root.tag[:60]} 不是 Atom 或 RSS", f"root {root.tag[:60]} is neither Atom nor RSS")


def _inline(element: Element) -> bytes | None:
    for child in element.iter():
        if child.tag in CAP_TAGS:
            return tostring(child, encoding="utf-8")
    return None


def _atom_entry(element: Element, base_url: str) -> Entry:
    ident = (element.findtext(ATOM + "id") or "").strip()
    links = element.findall(ATOM + "link")
    cap_links = [link for link in links if "cap" in (link.get("type") or "")] or links
    href = cap_links[0].get("href") if cap_links else None
    link = urljoin(base_url, href) if href else None
    return Entry(id=ident or (link or ""), inline=_inline(element), link=link)


def _rss_item(element: Element, base_url: str) -> Entry:
    enclosure = element.find("enclosure")
    href = enclosure.get("url") if enclosure is not None else (element.findtext("link") or "").strip()
    link = urljoin(base_url, href) if href else None
    ident = (element.findtext("guid") or "").strip()
    return Entry(id=ident or (link or ""), inline=_inline(element), link=link)


def poll_feed(platform: Platform, feed: Feed, now: float | None = None) -> PollResult:
    """Fetch one feed and ingest every entry not taken before; record the feed's health."""
    now = time.time() if now is None else now
    result = PollResult(url=feed.url, ok=False)
    with platform.db.transaction() as session:
        state = session.get(FeedState, feed.url) or FeedState(url=feed.url, failures=0, entries_seen=0, seen=[])
        session.add(state)
        state.last_poll_at = now
    seen = set(state.seen or [])
    found: list[Entry] = []
    try:
        found = entries(fetch(feed.url, feed, MAX_FEED_BYTES), feed.url)
        fresh = [e for e in found if not e.id or e.id not in seen]
        for entry in fresh:
            result.taken.append(_take(platform, feed, entry))
    except BroadcastError as error:
        result.error = error.en[:500]
    refused = [t for t in result.taken if t.get("error")]
    if result.error is None and refused:
        result.error = f"{len(refused)} entr{'y' if len(refused) == 1 else 'ies'} refused: {refused[0]['error']}"[:500]
    result.ok = result.error is None
    # An entry whose link could not be fetched is tried again next time; a refused one is not (it was audited).
    retry = {t["entry"] for t in result.taken if t.get("error") == "alert.feed_error"}
    _record(platform, feed, result, [e.id for e in found if e.id and e.id not in retry], now)
    return result


def _take(platform: Platform, feed: Feed, entry: Entry) -> dict[str, Any]:
    data = entry.inline
    try:
        if data is None:
            if entry.link is None:
                raise feed_error("条目没有 CAP 内容或链接", "an entry has neither inline CAP nor a link")
            data = fetch(entry.link, feed, MAX_BYTES)
        with platform.db.transaction() as session:
            if _known(session, data):
                return {"entry": entry.id, "action": "known"}
        session = platform.db.session()
        try:
            outcome = alerts.ingest(session, platform, data, actor="feed", source=f"feed:{feed.url}"[:64])
        finally:
            session.close()
        return {"entry": entry.id, **outcome.as_json()}
    except BroadcastError as error:
        return {"entry": entry.id, "error": error.code}


def _known(session: Any, data: bytes) -> bool:
    """True when this exact message was taken before (so a re-read entry adds no duplicate decision)."""
    try:
        key = cap.parse(data).key
    except AlertError:
        return False  # ingest refuses it and audits why
    query = select(Alert.id).where(Alert.sender == key[0], Alert.identifier == key[1], Alert.sent_key == key[2])
    return session.scalar(query) is not None


def _record(platform: Platform, feed: Feed, result: PollResult, ids: list[str], now: float) -> None:
    with platform.db.transaction() as session:
        state = session.get(FeedState, feed.url)
        assert state is not None
        was_failing = state.error is not None
        if result.ok:
            state.last_ok_at, state.failures, state.error = now, 0, None
        else:
            state.failures, state.error = state.failures + 1, result.error
        state.seen = list(dict.fromkeys([*ids, *(state.seen or [])]))[:SEEN_KEPT]
        state.entries_seen += sum(1 for t in result.taken if "alert_id" in t)
        if result.ok == was_failing:  # audit the changes only, not every failing poll
            action = "alert.feed_recovered" if result.ok else "alert.feed_error"
            audit.record(session, "feed", action, object_type="feed", object_id=feed.url[:64], error=result.error)


def poll_due(platform: Platform, now: float | None = None) -> list[PollResult]:
    """Poll every configured feed whose interval has passed (the worker's job)."""
    now = time.time() if now is None else now
    feeds = parse_feeds(str(platform.settings.get("ALERT_FEEDS", "")))
    with platform.db.transaction() as session:
        last = {s.url: s.last_poll_at for s in session.scalars(select(FeedState))}
    return [poll_feed(platform, f, now) for f in feeds if last.get(f.url) is None or now - last[f.url] >= f.interval_s]


def feed_alarms(platform: Platform, now: float | None = None) -> list[dict[str, Any]]:
    """Every configured feed with its health; `alarm` is set when it answers garbage or has stalled."""
    now = time.time() if now is None else now
    stall_s = float(platform.settings.get("ALERT_FEED_STALL_S", 900))
    with platform.db.transaction() as session:
        states = {s.url: s for s in session.scalars(select(FeedState))}
        shown = []
        for feed in parse_feeds(str(platform.settings.get("ALERT_FEEDS", ""))):
            state = states.get(feed.url)
            last_ok = state.last_ok_at if state else None
            stalled = last_ok is None or now - last_ok > stall_s
            error = state.error if state else None
            alarm = "garbage_or_error" if error else ("stalled" if stalled and state is not None else None)
            shown.append(
                {
                    "url": feed.url,
                    "last_ok_at": last_ok,
                    "last_poll_at": state.last_poll_at if state else None,
                    "failures": state.failures if state else 0,
                    "error": error,
                    "alarm": alarm,
                    "entries_taken": state.entries_seen if state else 0,
                }
            )
    return shown
