"""Rate limits on cached API reads: every read is counted (a cached answer too), in any counter storage."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from broadcast.web import rate_counters
from broadcast.web.rate_counters import ProcessCounters
from tests.broadcast.conftest import auth, seed_county
from tests.broadcast.test_input import error_of
from tests.conftest import free_port, make_app


@pytest.mark.parametrize("storage", ["", "memory://"], ids=["process", "memory"])
def test_cached_reads_still_count_against_the_token(tmp_path: Path, sqlite_url: str, storage: str) -> None:
    app = make_app(
        tmp_path / "i",
        sqlite_url,
        MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
        API_READ_RATE_LIMIT="4/minute",
        RATE_LIMIT_STORAGE=storage,
    )
    try:
        tokens = seed_county(app)
        client = app.test_client()
        for _ in range(4):  # the first fills the cache, the next three are answered from it
            assert client.get("/api/v1/speakers", headers=auth(tokens["operator"])).status_code == 200
        refused = client.get("/api/v1/speakers", headers=auth(tokens["operator"]))
        error_of(refused, 429, "rate_limited")
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert client.get("/api/v1/speakers", headers=auth(tokens["admin"])).status_code == 200  # its own count
    finally:
        app.extensions["platform"].close()


def test_process_counters_start_a_new_window_when_the_last_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(rate_counters, "time", SimpleNamespace(time=lambda: clock.now))
    counters = ProcessCounters()
    assert [counters.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert counters.get("k") == 3
    assert counters.get_expiry("k") == 1060.0
    assert counters.incr("other", 5) == 1
    clock.now = 1059.0
    assert counters.incr("k", 60) == 4  # still the same window
    clock.now = 1060.0
    assert counters.get("k") == 0
    assert counters.incr("k", 60) == 1  # a new window from here
    assert counters.get_expiry("k") == 1120.0
    clock.now = 1200.0
    counters.incr("k", 60)  # the sweep drops windows nobody touched since they ended
    assert "other" not in counters._windows
    counters.clear("k")
    assert counters.get("k") == 0
    counters.incr("a", 60)
    assert counters.reset() == 1
