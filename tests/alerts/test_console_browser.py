"""The 预警 page in headless Chromium: a held alert appears at once with a sound, is confirmed, and its coverage
fills in live from a real speaker; the emergency button needs the typed confirmation."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.alerts.triggers import sign
from broadcast.models import Alert
from tests.alerts.corpus import AreaSpec, InfoSpec, cap
from tests.broadcast.conftest import HUANGSHA
from tests.broadcast.test_worker import Server, server_stack, stop_stack
from tests.e2e.procs import wait_for
from tests.requires import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
SECRET = "browser-cap-secret-0123456789abcdef"
SPEAKER = "spk-42122410420101-1"  # 黄沙铺镇; its neighbours stay offline
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "alerts.png"


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    """Broker, web tier on a free port, worker and one real agent."""
    server = server_stack(tmp_path, sqlite_url, ALERT_HMAC_SECRET=SECRET, ALERT_REPEAT=1)
    try:
        server.agent(SPEAKER)
        server.worker()
        wait_for(lambda: server.online(SPEAKER), 90, "the agent online")
        yield server
    finally:
        stop_stack(server)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (sound allowed without a click, as after an operator's first one)."""
    need(CHROMIUM, "chromium not installed (Debian package `chromium`, with fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _post_held(server: Server, ident: str, headline: str) -> dict[str, Any]:
    area = [AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])]
    body = cap(ident=ident, sent=datetime.now(UTC), infos=[InfoSpec(areas=area, headline=headline)])
    headers = {"Content-Type": "application/cap+xml", "X-Signature": sign(SECRET, body)}
    response = server.app.test_client().post("/api/v1/alerts", data=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["action"] == "held"
    return response.get_json()


def _alerts(server: Server) -> int:
    with server.platform.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Alert)) or 0)


def test_an_operator_hears_confirms_and_watches_a_held_alert(stack: Server, browser: Any) -> None:
    base = stack.env["BROADCAST_PUBLIC_URL"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/login")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", "operator-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.click("#nav-alerts")
    page.wait_for_url(base + "/alerts")
    assert page.is_visible("#no-held")
    assert page.get_attribute("body", "data-alert-sound") is None  # nothing held, nothing rang

    held = _post_held(stack, "HELD-1", "暴雨黄色预警")
    article = f'article[data-alert="{held["alert_id"]}"]'
    page.wait_for_selector(article, timeout=30000)  # the page notices within one poll and shows it on top
    page.wait_for_selector("body[data-alert-sound=played]", state="attached", timeout=30000)
    assert "policy_hold:level_yellow" in page.text_content(article)
    assert page.text_content("#held-badge") == "1"

    page.click(f"{article} button[data-action=confirm]")
    page.wait_for_url(re.compile(rf".*/alerts/{held['alert_id']}$"))
    row = f'#coverage tr[data-township="{HUANGSHA}"]'
    sounded = lambda: (page.text_content(f"{row} .sounded") or "").startswith("1 /")  # noqa: E731
    wait_for(sounded, 60, "the live coverage to show the speaker that sounded")
    speakers = int(page.text_content(f"{row} .speakers") or 0)
    assert speakers > 1
    assert int(page.text_content(f"{row} .offline") or 0) == speakers - 1  # the others never connected
    assert page.text_content(f"{row} .tone") == "1"
    actions = page.eval_on_selector_all("#decisions tr[data-action]", "rows => rows.map(r => r.dataset.action)")
    assert actions == ["received", "held", "broadcast"]
    assert "confirmed_by:operator" in page.text_content("#decisions")

    # the emergency button: a wrong confirmation is refused in Chinese and changes nothing
    page.goto(base + "/alerts")
    before = _alerts(stack)
    page.fill("#manual-text", "大坝出现险情，请黄沙铺镇群众立即向高处转移。")
    page.check(f'#manual input[value="{HUANGSHA}"]')
    page.fill("#manual-confirm", "确认")
    page.click("#manual-send")
    page.wait_for_selector("#alert-error")
    assert "确认播发" in page.text_content("#alert-error")
    assert _alerts(stack) == before
    assert page.is_checked(f'#manual input[value="{HUANGSHA}"]')  # the form kept what was chosen
    page.fill("#manual-confirm", "确认播发")
    page.click("#manual-send")
    page.wait_for_url(re.compile(r".*/alerts/\d+$"))
    assert _alerts(stack) == before + 1
    assert page.get_attribute("#alert-state", "data-state") == "active"

    _post_held(stack, "HELD-2", "大风蓝色预警")
    page.goto(base + "/alerts")
    page.wait_for_selector("#held article")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
