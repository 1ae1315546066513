"""The audit page: the chain's verdict, filters by person, region, action and time, scope by role, CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from broadcast.services import audit
from tests.broadcast.conftest import DALU, HUANGSHA, HUANGSHA_VILLAGE, seed_county
from tests.broadcast.test_audit_chain import _behind_the_apps_back
from tests.broadcast.test_console import log_in


@pytest.fixture
def trail(app: Any) -> Any:
    """The demo county with a few events in two townships, one with a cell Excel would run as a formula."""
    seed_county(app)
    with app.extensions["platform"].db.transaction() as session:
        audit.record(session, "operator", "broadcast.create", object_type="broadcast", object_id=1, regions=[HUANGSHA])
        audit.record(
            session, "village", "schedule.create", object_type="schedule", object_id=2, regions=[HUANGSHA_VILLAGE]
        )
        audit.record(session, "dalu-op", "broadcast.create", object_type="broadcast", object_id=3, regions=[DALU])
        audit.record(session, "admin", "broadcast.stop", object_type="broadcast", object_id="=1+2", regions=[DALU])
    return app


def _client(app: Any, user: str) -> Any:
    client = app.test_client()
    log_in(client, user, "admin-password-123" if user == "admin" else f"{user}-password-1")
    return client


def _rows(client: Any, query: str = "") -> list[tuple[str, str]]:
    """(actor, action) of each row of the CSV export, checking its BOM and headers."""
    answer = client.get("/audit.csv" + query)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    body = answer.get_data()
    assert body.startswith("\ufeff".encode())  # Excel reads UTF-8 Chinese only with a BOM
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert table[0][:3] == ["时间", "操作人", "动作"]
    return [(row[1], row[2]) for row in table[1:]]


def test_admins_filter_the_whole_trail(trail: Any) -> None:
    admin = _client(trail, "admin")
    everything = _rows(admin)
    assert ("operator", "broadcast.create") in everything
    assert ("dalu-op", "broadcast.create") in everything
    assert _rows(admin, "?person=operator") == [("operator", "broadcast.create")]
    assert {a for _, a in _rows(admin, "?action=broadcast.stop")} == {"broadcast.stop"}
    assert set(_rows(admin, f"?region={DALU}")) == {("dalu-op", "broadcast.create"), ("admin", "broadcast.stop")}
    township = set(_rows(admin, f"?region={HUANGSHA}"))  # a township's filter holds its villages' events
    assert {("operator", "broadcast.create"), ("village", "schedule.create")} <= township
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%d")
    assert _rows(admin, f"?since={tomorrow}") == []
    assert len(_rows(admin, f"?until={tomorrow}")) == len(everything)


def test_operators_read_only_their_region(trail: Any) -> None:
    rows = _rows(_client(trail, "operator"))
    assert ("operator", "broadcast.create") in rows
    assert ("village", "schedule.create") in rows
    assert not any(actor == "dalu-op" or action == "broadcast.stop" for actor, action in rows)
    page = _client(trail, "operator").get(f"/audit?region={DALU}").get_data(as_text=True)
    assert "dalu-op" not in page


@pytest.mark.parametrize("user", ["village", "viewer"])
def test_others_may_not_read_the_trail(trail: Any, user: str) -> None:
    client = _client(trail, user)
    assert client.get("/audit").status_code == 403
    assert client.get("/audit.csv").status_code == 403


def test_the_export_defuses_formulas(trail: Any) -> None:
    answer = _client(trail, "admin").get("/audit.csv?action=broadcast.stop").get_data().decode("utf-8-sig")
    row = list(csv.reader(io.StringIO(answer)))[1]
    assert row[4] == "'=1+2"  # shown as text, never run as a formula


def test_bad_filters_are_refused_in_chinese(trail: Any) -> None:
    admin = _client(trail, "admin")
    answer = admin.get("/audit?since=yesterday")
    assert answer.status_code == 422
    assert "日期格式无效" in answer.get_data(as_text=True)
    backwards = admin.get("/audit?since=2026-11-20&until=2026-11-01")
    assert backwards.status_code == 422
    assert "结束日期早于开始日期" in backwards.get_data(as_text=True)


def test_the_page_pages_and_shows_the_verdict(trail: Any) -> None:
    admin = _client(trail, "admin")
    with trail.extensions["platform"].db.transaction() as session:
        for i in range(60):
            audit.record(session, "admin", "region.create", object_type="region", object_id=i)
    first = admin.get("/audit?action=region.create").get_data(as_text=True)
    assert 'id="verdict" data-ok="yes"' in first
    assert "共 60 条，第 1/2 页" in first
    assert 'id="next-page"' in first
    second = admin.get("/audit?action=region.create&page=2").get_data(as_text=True)
    assert "第 2/2 页" in second
    assert 'id="next-page"' not in second

    def tamper(conn: Any) -> None:
        conn.execute(text("UPDATE audit_events SET actor = 'nobody' WHERE action = 'broadcast.stop'"))

    _behind_the_apps_back(trail, tamper)
    broken = admin.get("/audit").get_data(as_text=True)
    assert 'id="verdict" data-ok="no"' in broken
    assert "日志链已被破坏" in broken
