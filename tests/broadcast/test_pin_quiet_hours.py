"""Pins of the server's quiet hours: the first and last minute of a span, both sides, over midnight and by day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from broadcast.errors import BroadcastError
from broadcast.models import Broadcast, Delivery
from broadcast.services.quiet_hours import QuietHours
from tests.broadcast.conftest import HUANGSHA, auth, seed_county
from tests.conftest import free_port, make_app

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(hms: tuple[int, int, int], day: date = date(2026, 11, 23), zone: ZoneInfo = SHANGHAI) -> float:
    """Unix time of a wall-clock instant."""
    return datetime.combine(day, time(*hms), zone).timestamp()


OVERNIGHT = [
    ((21, 59, 59), False),
    ((22, 0, 0), True),  # the first minute is quiet
    ((22, 0, 59), True),
    ((23, 59, 59), True),
    ((0, 0, 0), True),
    ((5, 59, 0), True),  # the last minute is quiet
    ((5, 59, 59), True),
    ((6, 0, 0), False),  # the end is not
    ((6, 0, 1), False),
    ((12, 0, 0), False),
]


@pytest.mark.parametrize(("hms", "quiet"), OVERNIGHT, ids=[f"{h:02d}:{m:02d}:{s:02d}" for (h, m, s), _ in OVERNIGHT])
def test_overnight_span_edges(hms: tuple[int, int, int], quiet: bool) -> None:
    assert QuietHours.parse("22:00-06:00").contains(at(hms), SHANGHAI) is quiet


DAYTIME = [((12, 29, 59), False), ((12, 30, 0), True), ((12, 59, 59), True), ((13, 0, 0), False)]


@pytest.mark.parametrize(("hms", "quiet"), DAYTIME, ids=[f"{h:02d}:{m:02d}:{s:02d}" for (h, m, s), _ in DAYTIME])
def test_daytime_span_edges(hms: tuple[int, int, int], quiet: bool) -> None:
    assert QuietHours.parse("12:30-13:00").contains(at(hms), SHANGHAI) is quiet


def test_no_span_and_an_empty_span_are_never_quiet() -> None:
    for text in ("", "  ", "22:00-22:00"):
        hours = QuietHours.parse(text)
        assert not any(hours.contains(at((h, 0, 0)), SHANGHAI) for h in range(24)), text
    half = QuietHours(time(22, 0), None)
    assert not half.contains(at((23, 0, 0)), SHANGHAI), "a span without an end is no span"
    assert str(half) == ""


def test_quiet_hours_are_in_the_configured_zone() -> None:
    hours = QuietHours.parse("22:00-06:00")
    utc = ZoneInfo("UTC")
    assert hours.contains(at((22, 0, 0)), SHANGHAI)
    assert not hours.contains(at((22, 0, 0)), utc), "22:00 in Shanghai is 14:00 UTC"
    assert hours.contains(at((22, 0, 0), zone=utc), utc)


def test_parse_round_trips_and_refuses_nonsense_in_both_languages() -> None:
    assert str(QuietHours.parse(" 7:05 - 8:00 ")) == "07:05-08:00"
    assert QuietHours.parse("22:00-06:30") == QuietHours(time(22, 0), time(6, 30))
    assert QuietHours.parse("23:59-23:00") == QuietHours(time(23, 59), time(23, 0)), "the last hour and minute exist"
    assert QuietHours.parse("00:00-23:59") == QuietHours(time(0, 0), time(23, 59))
    assert str(QuietHours()) == ""
    for bad in ("22-06", "24:00-06:00", "22:00-24:00", "22:60-06:00", "22:00-06:60", "22:00", "night"):
        with pytest.raises(BroadcastError) as caught:
            QuietHours.parse(bad)
        assert caught.value.code == "invalid_quiet_hours"
        assert "静默时段" in caught.value.zh
        assert "quiet hours" in caught.value.en.lower()


@pytest.fixture
def quiet_app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The app with quiet hours 22:00-06:00 Shanghai time, on each database."""
    app = make_app(tmp_path / "q", database_url, QUIET_HOURS="22:00-06:00", MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    yield app
    app.extensions["platform"].close()


def _rows(app: Any) -> tuple[int, int]:
    with app.extensions["platform"].db.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Broadcast)) or 0,
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
        )


def test_a_broadcast_at_the_edges_of_quiet_hours(quiet_app: Any) -> None:
    """Through the API: 21:59:59 and 06:00:00 are accepted; 22:00:00 and 05:59:59 refused and nothing recorded."""
    tokens = seed_county(quiet_app)
    client = quiet_app.test_client()
    reply = client.post("/api/v1/clips", json={"text": "各位村民请注意。"}, headers=auth(tokens["admin"]))
    assert reply.status_code == 201, reply.get_data(as_text=True)
    clip_id = reply.get_json()["id"]
    day = (datetime.now(SHANGHAI) + timedelta(days=2)).date()

    def send(hms: str, priority: str = "normal", lang: str = "zh") -> Any:
        payload = {"clip_id": clip_id, "targets": [HUANGSHA], "priority": priority, "start_at": f"{day}T{hms}"}
        return client.post("/api/v1/broadcasts", json=payload, headers=auth(tokens["admin"], lang))

    ok = send("21:59:59")
    assert ok.status_code == 201, ok.get_data(as_text=True)
    assert ok.get_json()["start_at"] == at((21, 59, 59), day)
    before = _rows(quiet_app)
    for hms in ("22:00:00", "05:59:59", "23:30:00"):
        refused = send(hms)
        assert refused.status_code == 422, (hms, refused.get_data(as_text=True))
        assert refused.get_json()["error"]["code"] == "quiet_hours"
        assert "静默时段" in refused.get_json()["error"]["message"]
    english = send("22:00:00", lang="en")
    assert "quiet hours" in english.get_json()["error"]["message"]
    assert _rows(quiet_app) == before, "a refused broadcast records nothing"
    assert send("06:00:00").status_code == 201
    assert send("22:00:00", "emergency").status_code == 201, "emergencies play in quiet hours"
