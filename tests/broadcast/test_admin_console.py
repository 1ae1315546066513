"""Console pages for the county's data through the test client: regions, import preview/commit, speakers, users, map."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.models import Region, Speaker, User
from tests.broadcast.conftest import HUANGSHA, HUANGSHA_VILLAGE, seed_county
from tests.broadcast.test_console import csrf_of, log_in
from tests.broadcast.test_import import SPEAKER_HEADERS, xlsx

GRID = HUANGSHA_VILLAGE + "01"


@pytest.fixture
def seeded(app: Any) -> Any:
    """The demo county with users of every role."""
    seed_county(app)
    return app


def _count(app: Any, model: type) -> int:
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_only_admins_and_operators_manage_and_everyone_changes_their_password(client: Any, seeded: Any) -> None:
    assert client.get("/admin/regions").status_code == 302  # anonymous: to the login page
    log_in(client, "viewer", "viewer-password-1")
    for path in ("/admin/regions", "/admin/speakers", "/admin/import", "/admin/users"):
        page = client.get(path)
        assert page.status_code == 403, path
        assert 'data-code="forbidden"' in page.get_data(as_text=True)
    assert client.get("/admin/map").status_code == 200
    form = client.get("/account/password").get_data(as_text=True)
    wrong = {"old": "nope", "new": "viewer-password-2", "again": "viewer-password-2", "csrf_token": csrf_of(form)}
    assert "原密码不正确" in client.post("/account/password", data=wrong).get_data(as_text=True)
    good = {**wrong, "old": "viewer-password-1"}
    done = client.post("/account/password", data=good, follow_redirects=True)
    assert "密码已修改" in done.get_data(as_text=True)
    assert client.get("/admin/map").status_code == 200  # this session stays logged in


def test_operator_adds_a_village_previews_an_import_with_problems_then_commits_a_good_one(
    client: Any, seeded: Any
) -> None:
    log_in(client, "operator", "operator-password-1")
    page = client.get(f"/admin/regions?code={HUANGSHA}").get_data(as_text=True)
    assert "黄沙村" in page
    made = client.post(
        f"/admin/regions?code={HUANGSHA}",
        data={"action": "create", "level": "village", "parent_code": HUANGSHA, "code": "421224104209", "name": "新村"},
        headers={"X-CSRFToken": csrf_of(page)},
    )
    assert made.status_code == 302
    bad = client.post(
        f"/admin/regions?code={HUANGSHA}",
        data={"action": "create", "level": "village", "parent_code": HUANGSHA, "code": "421224205209", "name": "错"},
        headers={"X-CSRFToken": csrf_of(page)},
    ).get_data(as_text=True)
    assert "不在上级" in bad
    retire = client.post(
        f"/admin/regions?code={HUANGSHA}",
        data={"action": "retire", "code": HUANGSHA_VILLAGE},
        headers={"X-CSRFToken": csrf_of(page)},
    ).get_data(as_text=True)
    assert "仍在使用" in retire
    with seeded.extensions["platform"].db.transaction() as session:
        assert session.get(Region, "421224104209").name == "新村"

    form = client.get("/admin/import").get_data(as_text=True)
    rows = [["spk-c-1", "新音柱", GRID, 29.6, 114.5, "村口", "否"], ["spk-c-2", "错", "999", "", "", "", "否"]]
    before = _count(seeded, Speaker)
    upload = {"kind": "speakers", "action": "preview", "csrf_token": csrf_of(form)}
    preview = client.post(
        "/admin/import", data={**upload, "file": (io.BytesIO(xlsx(SPEAKER_HEADERS, rows)), "s.xlsx")}
    ).get_data(as_text=True)
    assert 'data-ok="no"' in preview
    assert "网格不存在" in preview
    assert 'id="commit"' not in preview
    preview = client.post(
        "/admin/import", data={**upload, "file": (io.BytesIO(xlsx(SPEAKER_HEADERS, rows[:1])), "s.xlsx")}
    ).get_data(as_text=True)
    assert 'data-ok="yes"' in preview
    assert _count(seeded, Speaker) == before
    token = re.search(r'name="token" value="([0-9a-f]+)"', preview)
    assert token
    done = client.post(
        "/admin/import",
        data={"kind": "speakers", "action": "commit", "token": token.group(1), "csrf_token": csrf_of(preview)},
    ).get_data(as_text=True)
    assert 'data-applied="yes"' in done
    assert _count(seeded, Speaker) == before + 1


def test_speaker_page_edits_moves_and_downloads_a_configuration(client: Any, seeded: Any) -> None:
    log_in(client, "admin", "admin-password-123")
    listing = client.get(f"/admin/speakers?region={GRID}").get_data(as_text=True)
    assert f"spk-{GRID}-1" in listing
    assert "共 2 台" in listing
    page = client.get(f"/admin/speakers/spk-{GRID}-1").get_data(as_text=True)
    other_grid = HUANGSHA_VILLAGE + "02"
    fields = {
        "action": "save",
        "name": "改过的音柱",
        "grid_code": other_grid,
        "latitude": "29.61",
        "longitude": "114.5",
    }
    saved = client.post(
        f"/admin/speakers/spk-{GRID}-1", data={**fields, "test_speaker": "on", "csrf_token": csrf_of(page)}
    )
    assert saved.status_code == 302
    with seeded.extensions["platform"].db.transaction() as session:
        speaker = session.get(Speaker, f"spk-{GRID}-1")
        assert (speaker.name, speaker.grid_code, speaker.latitude, speaker.test_speaker) == (
            "改过的音柱",
            other_grid,
            29.61,
            True,
        )
    bad = client.post(
        f"/admin/speakers/spk-{GRID}-1", data={**fields, "latitude": "北纬", "csrf_token": csrf_of(page)}
    ).get_data(as_text=True)
    assert "纬度无效" in bad
    download = client.post(f"/admin/speakers/spk-{GRID}-1", data={"action": "provision", "csrf_token": csrf_of(page)})
    config = json.loads(download.get_data(as_text=True))
    assert other_grid in config["regions"]
    assert GRID not in config["regions"]
    svg = client.get("/admin/map").get_data(as_text=True)
    assert f'data-speaker="spk-{GRID}-1"' in svg
    assert "另有 23 台没有坐标" in svg


def test_users_page_creates_a_user_shows_the_password_once_and_resets_it(client: Any, seeded: Any) -> None:
    log_in(client, "operator", "operator-password-1")
    page = client.get("/admin/users").get_data(as_text=True)
    made = client.post(
        "/admin/users",
        data={"username": "clerk2", "role": "viewer", "region_code": HUANGSHA, "csrf_token": csrf_of(page)},
    ).get_data(as_text=True)
    first = re.search(r'id="new-password">([^<]+)<', made)
    assert first
    assert first.group(1) not in client.get("/admin/users").get_data(as_text=True)
    user_page = client.get("/admin/users/clerk2").get_data(as_text=True)
    reset = client.post("/admin/users/clerk2", data={"action": "reset", "csrf_token": csrf_of(user_page)}).get_data(
        as_text=True
    )
    second = re.search(r'id="secret">([^<]+)<', reset)
    assert second
    assert second.group(1) != first.group(1)
    client.post("/admin/users/clerk2", data={"action": "disable", "csrf_token": csrf_of(user_page)})
    with seeded.extensions["platform"].db.transaction() as session:
        assert session.scalars(select(User).where(User.username == "clerk2")).one().active is False
    assert client.get("/admin/users/admin").status_code == 403
