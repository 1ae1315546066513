"""The feed poller against a local HTTP server: inline and linked CAP entries, no re-reads, garbage and stalls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from broadcast.alert_feeds import entries, feed_alarms, parse_feeds, poll_due
from broadcast.alerts import AlertError
from broadcast.models import Alert, AlertDecision, AuditEvent
from tests.alerts.corpus import AreaSpec, InfoSpec, cap
from tests.broadcast.conftest import HUANGSHA, auth

ATOM = "http://www.w3.org/2005/Atom"


class Site(BaseHTTPRequestHandler):
    """Serves whatever the test put in `pages` and remembers the Authorization header of each request."""

    pages: ClassVar[dict[str, tuple[int, str, bytes]]] = {}
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        """Answer from `pages`, 404 otherwise."""
        Site.seen_auth.append(self.headers.get("Authorization"))
        status, kind, body = Site.pages.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


@pytest.fixture
def site() -> Iterator[str]:
    """A local HTTP server on a free port; yields its base URL."""
    Site.pages, Site.seen_auth = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _message(ident: str) -> bytes:
    info = InfoSpec(areas=[AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])])
    return cap(ident=ident, infos=[info])


def _atom(*items: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="{ATOM}"><title>12379</title>' + "".join(items)
    ).encode() + b"</feed>"


def _inline_entry(ident: str) -> str:
    body = _message(ident).decode().split("?>", 1)[1]
    return f"<entry><id>urn:{ident}</id><content type='application/cap+xml'>{body}</content></entry>"


def _linked_entry(ident: str, href: str) -> str:
    return f"<entry><id>urn:{ident}</id><link type='application/cap+xml' href='{href}'/></entry>"


def _configure(app: Any, base: str, **extra: Any) -> None:
    feed = {"url": f"{base}/feed.atom", "interval_s": 60, "username": "county", "password": "feed-pass", **extra}
    app.extensions["platform"].settings["ALERT_FEEDS"] = json.dumps([feed])


def test_feed_settings_are_checked() -> None:
    assert parse_feeds("") == []
    assert parse_feeds('[{"url": "https://x.example/f", "token": "t"}]')[0].token == "t"
    for bad in ("{", "{}", '[{"url": "ftp://x/f"}]', '[{"url": "http://x/f", "interval_s": 1}]'):
        with pytest.raises(AlertError):
            parse_feeds(bad)


def test_rss_and_atom_entries_are_read() -> None:
    rss = b"<rss><channel><item><guid>g1</guid><link>/cap/1.xml</link></item></channel></rss>"
    assert [(e.id, e.link) for e in entries(rss, "http://h/feed")] == [("g1", "http://h/cap/1.xml")]
    atom = _atom(_inline_entry("A-1"))
    (entry,) = entries(atom, "http://h/feed")
    assert entry.inline is not None
    assert b"A-1" in entry.inline


def test_a_feed_is_polled_into_alerts_once_each(alert_app: Any, county: dict[str, Any], site: str) -> None:
    _configure(alert_app, site)
    Site.pages["/cap/2.xml"] = (200, "application/cap+xml", _message("FEED-2"))
    Site.pages["/feed.atom"] = (
        200,
        "application/atom+xml",
        _atom(_inline_entry("FEED-1"), _linked_entry("FEED-2", "/cap/2.xml")),
    )
    platform, now = alert_app.extensions["platform"], datetime.now(UTC).timestamp()
    (first,) = poll_due(platform, now)
    assert first.ok, first.error
    assert [t["action"] for t in first.taken] == ["broadcast", "broadcast"]
    assert Site.seen_auth[0] == "Basic Y291bnR5OmZlZWQtcGFzcw=="  # county:feed-pass
    assert poll_due(platform, now + 10) == []  # not due yet
    (second,) = poll_due(platform, now + 61)
    assert second.ok
    assert second.taken == []  # entries already taken are not read again
    with platform.db.transaction() as session:
        assert len(session.scalars(select(Alert)).all()) == 2
        assert {d.action for d in session.scalars(select(AlertDecision))} == {"received", "broadcast"}
    shown = alert_app.test_client().get("/api/v1/alerts/feeds", headers=auth(county["tokens"]["admin"])).json
    assert shown["items"][0]["alarm"] is None
    assert shown["items"][0]["entries_taken"] == 2


def test_garbage_and_stalls_raise_alarms(alert_app: Any, county: dict[str, Any], site: str) -> None:
    _configure(alert_app, site)
    platform, now = alert_app.extensions["platform"], datetime.now(UTC).timestamp()
    Site.pages["/feed.atom"] = (200, "application/atom+xml", _atom(_inline_entry("OK-1")))
    assert poll_due(platform, now)[0].ok  # the feed works first
    assert feed_alarms(platform, now)[0]["alarm"] is None
    Site.pages["/feed.atom"] = (200, "text/html", b"<html><body>502 Bad Gateway")
    (bad,) = poll_due(platform, now + 61)
    assert not bad.ok
    assert "garbage" in (bad.error or "")
    assert feed_alarms(platform, now + 61)[0]["alarm"] == "garbage_or_error"
    Site.pages["/feed.atom"] = (200, "application/atom+xml", _atom(_inline_entry("OK-1")))
    assert poll_due(platform, now + 122)[0].ok  # recovered
    later = now + 122 + timedelta(hours=1).total_seconds()
    Site.pages.pop("/feed.atom")  # the feed answers 404 from now on: no good answer for an hour
    assert not poll_due(platform, later)[0].ok
    assert feed_alarms(platform, later)[0]["alarm"] == "garbage_or_error"
    with platform.db.transaction() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("alert.feed%")).order_by(AuditEvent.id)
        ).all()
    assert actions == ["alert.feed_error", "alert.feed_recovered", "alert.feed_error"]


def test_a_silent_feed_is_shown_stalled(alert_app: Any, county: dict[str, Any], site: str) -> None:
    _configure(alert_app, site)
    platform, now = alert_app.extensions["platform"], datetime.now(UTC).timestamp()
    Site.pages["/feed.atom"] = (200, "application/atom+xml", _atom())
    assert poll_due(platform, now)[0].ok
    stall = float(platform.settings["ALERT_FEED_STALL_S"])
    assert feed_alarms(platform, now + stall - 1)[0]["alarm"] is None
    assert feed_alarms(platform, now + stall + 1)[0]["alarm"] == "stalled"


def test_a_refused_entry_is_an_alarm_and_audited_once(alert_app: Any, county: dict[str, Any], site: str) -> None:
    _configure(alert_app, site)
    platform, now = alert_app.extensions["platform"], datetime.now(UTC).timestamp()
    hostile = "<entry><id>urn:x</id><link type='application/cap+xml' href='/cap/evil.xml'/></entry>"
    Site.pages["/cap/evil.xml"] = (200, "application/cap+xml", b'<!DOCTYPE a [<!ENTITY x "y">]><alert>&x;</alert>')
    Site.pages["/feed.atom"] = (200, "application/atom+xml", _atom(hostile))
    (result,) = poll_due(platform, now)
    assert not result.ok
    assert result.taken == [{"entry": "urn:x", "error": "alert.hostile_xml"}]
    poll_due(platform, now + 61)
    with platform.db.transaction() as session:
        assert session.scalars(select(Alert)).all() == []
        rejected = session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.rejected")).all()
    assert len(rejected) == 1
    assert (datetime.now(UTC) - rejected[0].at) < timedelta(hours=1)
