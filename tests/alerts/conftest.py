"""Fixtures for alert API tests: the demo county with coordinates and drill speakers, a warning_source token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import Speaker
from broadcast.services import accounts
from tests.broadcast.conftest import seed_county
from tests.conftest import free_port, make_app

HMAC_SECRET = "test-cap-hmac-secret-0123456789"
SENSOR_SECRET = "reservoir-gauge-secret-0123"
HUANGSHA_XY = (29.60, 114.50)  # where the demo's 黄沙铺镇 speakers are put
DALU_XY = (29.45, 114.65)  # 大路乡, about 20 km away
TRIGGER_RULE = {
    "name": "黄沙水库",
    "secret": SENSOR_SECRET,
    "threshold": 85.0,
    "hysteresis": 1.0,
    "unit": "米",
    "event": "水库水位",
    "level": "red",
    "targets": ["421224104000"],
}
TRIGGERS = json.dumps({"reservoir-1": TRIGGER_RULE}, ensure_ascii=False)


def place_speakers(app: Any) -> dict[str, list[str]]:
    """Give every demo speaker coordinates near its township; flag one speaker per township for drills."""
    by_town: dict[str, list[str]] = {"huangsha": [], "dalu": []}
    with app.extensions["platform"].db.transaction() as session:
        for n, speaker in enumerate(session.scalars(select(Speaker).order_by(Speaker.id))):
            town = "huangsha" if speaker.grid_code.startswith("421224104") else "dalu"
            lat, lon = HUANGSHA_XY if town == "huangsha" else DALU_XY
            speaker.latitude, speaker.longitude = lat + (n % 12) * 0.001, lon + (n % 12) * 0.001
            speaker.test_speaker = not by_town[town]
            by_town[town].append(speaker.id)
    return by_town


@pytest.fixture
def alert_app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The app on each database, no broker reachable (commands wait for the worker), alerts configured."""
    application = make_app(
        tmp_path / "instance",
        database_url,
        MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        ALERT_HMAC_SECRET=HMAC_SECRET,
        ALERT_TRIGGERS=TRIGGERS,
        ALERT_REPEAT=1,
    )
    yield application
    application.extensions["platform"].close()


@pytest.fixture
def county(alert_app: Any) -> dict[str, Any]:
    """The seeded county: role tokens (plus warning_source) and speaker ids by township."""
    tokens = seed_county(alert_app)
    with alert_app.extensions["platform"].db.transaction() as session:
        user = accounts.create_user(session, "cap-feed", "cap-feed-password-1", "warning_source", None)
        tokens["warning_source"] = accounts.create_token(session, user)
    return {"tokens": tokens, "speakers": place_speakers(alert_app)}
