"""A county clerk's first day in headless Chromium: import the county, fix a bad sheet, add a colleague, map it."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broadcast.test_import import REGION_HEADERS, SPEAKER_HEADERS, county_rows, xlsx
from tests.conftest import free_port
from tests.e2e.procs import Proc, exe, url_up, wait_for
from tests.requires import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`broadcast init` with a known admin password, then `broadcast run` on an empty county."""
    from broadcast.platform import Platform
    from broadcast.setup import initialize

    instance = tmp_path / "instance"
    port, mqtt_port = free_port(), free_port()
    env = {"BROADCAST_INSTANCE": str(instance), "BROADCAST_QUIET_HOURS": "", "BROADCAST_TTS_ENGINES": "espeak"}
    platform = Platform.from_settings(instance, {"QUIET_HOURS": ""})
    initialize(platform, "admin", "admin-password-123")
    platform.close()
    proc = Proc(
        [exe("broadcast"), "run", "--port", str(port), "--mqtt-port", str(mqtt_port)], tmp_path / "run.log", env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: url_up(base + "/login"), 90, "the console")
        yield {"base": base, "tmp": tmp_path}
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    need(CHROMIUM, "chromium not installed (Debian package `chromium`, with fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _login(page: Any, base: str, user: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def _upload(page: Any, base: str, kind: str, path: Path) -> None:
    page.goto(base + "/admin/import")
    page.select_option("select[name=kind]", kind)
    page.set_input_files("input[name=file]", str(path))
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#report")


def test_a_county_clerk_onboards_the_county(server: dict[str, Any], browser: Any) -> None:
    base, tmp = server["base"], server["tmp"]
    region_rows, speaker_rows = county_rows(townships=2, villages=4, grids=8, speakers=30)
    (tmp / "regions.xlsx").write_bytes(xlsx(REGION_HEADERS, region_rows))
    broken = [list(r) for r in speaker_rows]
    broken[4][3] = "北纬29度"  # a typo in the installer's sheet
    (tmp / "broken.xlsx").write_bytes(xlsx(SPEAKER_HEADERS, broken))
    (tmp / "speakers.xlsx").write_bytes(xlsx(SPEAKER_HEADERS, speaker_rows))
    page = browser.new_page()
    _login(page, base, "admin", "admin-password-123")
    page.click("text=区域与终端")
    page.wait_for_url(re.compile(r".*/admin/regions"))

    _upload(page, base, "regions", tmp / "regions.xlsx")
    assert page.get_attribute("#report", "data-ok") == "yes"
    assert f"新增 {len(region_rows)}" in page.text_content("#report-summary")
    page.click("#commit button")
    page.wait_for_selector("#report[data-applied=yes]")

    _upload(page, base, "speakers", tmp / "broken.xlsx")
    assert page.get_attribute("#report", "data-ok") == "no"
    problems = page.text_content("#problems")
    assert "6" in problems
    assert "纬度无效" in problems
    assert page.query_selector("#commit") is None
    _upload(page, base, "speakers", tmp / "speakers.xlsx")
    page.click("#commit button")
    page.wait_for_selector("#report[data-applied=yes]")

    township = region_rows[1][0]
    page.goto(base + "/admin/users")
    page.fill("#create-user input[name=username]", "clerk")
    page.select_option("#create-user select[name=role]", "operator")
    page.select_option("#create-user select[name=region_code]", township)
    page.click("#create-user button[type=submit]")
    password = page.text_content("#new-password")
    assert password
    assert len(password) >= 10

    page.goto(base + f"/admin/speakers?region={speaker_rows[0][2]}")
    page.click(f"a:text('{speaker_rows[0][0]}')")
    with page.expect_download() as download:
        page.click("button[data-action=provision]")
    config = json.loads(Path(download.value.path()).read_text())
    assert config["speaker_id"] == speaker_rows[0][0]
    assert speaker_rows[0][2] in config["regions"]

    page.goto(base + "/admin/map")
    assert page.locator("#speaker-map circle").count() == len(speaker_rows)
    dot = f"#speaker-map circle[data-speaker='{speaker_rows[0][0]}']"
    assert page.get_attribute(dot, "data-state") == "never_seen"

    # the installer puts the downloaded configuration on the box and starts the agent: the map shows it online
    (tmp / "box.json").write_text(json.dumps(config))
    agent = Proc(
        [exe("speaker-agent"), "run", "--config", str(tmp / "box.json"), "--sink", str(tmp / "sink")],
        tmp / "agent.log",
    )
    try:

        def online() -> bool:
            page.goto(base + "/admin/map")
            return page.get_attribute(dot, "data-state") == "online"

        wait_for(online, 60, "the provisioned speaker to show online on the map")
        page.screenshot(path=str(tmp / "map.png"))
    finally:
        agent.stop()
    page.click("button:text('退出')")

    _login(page, base, "clerk", password)
    page.goto(base + "/admin/speakers")
    mine = page.text_content("#speaker-total")
    assert mine is not None
    assert f"共 {sum(1 for r in speaker_rows if r[2].startswith(township[:9]))} 台" in mine
    page.goto(base + "/account/password")
    page.fill("input[name=old]", password)
    page.fill("input[name=new]", "clerk-own-password-1")
    page.fill("input[name=again]", "clerk-own-password-1")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#password-changed")
    page.close()
