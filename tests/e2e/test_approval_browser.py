"""先审后播 in headless Chromium: a village head submits, an operator approves, a real speaker plays; the audit page
shows it all. Writes docs/screenshots/approvals.png and audit.png."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.models import Command
from tests.broadcast.conftest import HUANGSHA, HUANGSHA_VILLAGE
from tests.broadcast.test_worker import AGENT, Server, server_stack, stop_stack
from tests.e2e.procs import timeline, wait_for
from tests.requires import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    """Broker, web tier, worker and one real speaker agent in 黄沙村, where village heads need approval."""
    need(CHROMIUM, "chromium not installed (Debian package `chromium`, with fonts-noto-cjk)")
    server = server_stack(tmp_path, sqlite_url, APPROVAL_REQUIRED="village_head")
    try:
        server.agent(AGENT)
        server.worker()
        wait_for(lambda: server.online(AGENT), 60, "the worker to see the agent online")
        yield server
    finally:
        stop_stack(server)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _login(browser: Any, base: str, user: str, password: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def _commands(server: Server, broadcast_id: int) -> int:
    with server.platform.db.transaction() as session:
        query = select(func.count()).select_from(Command).where(Command.broadcast_id == broadcast_id)
        return int(session.scalar(query) or 0)


def _played(server: Server, broadcast_id: int) -> bool:
    return any(
        e["event"] == "finished" and e.get("broadcast_id") == str(broadcast_id) for e in timeline(server.sink(AGENT))
    )


def test_village_head_submits_operator_approves_speaker_plays(stack: Server, browser: Any) -> None:
    base = stack.platform.public_url.rstrip("/")
    village = _login(browser, base, "village", "village-password-1")
    village.fill("#text", "村民们请注意，明天上午九点在村委会开会。")
    village.click(f"li:has(> label input[value='{HUANGSHA}']) > details > summary")  # open the township
    village.check(f"input[name=targets][value='{HUANGSHA_VILLAGE}']")
    village.click("#send")
    village.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    broadcast_id = int(village.url.rsplit("/", 1)[-1])
    assert village.get_attribute("#status", "data-status") == "pending_approval"
    assert village.text_content("#status") == "待审批"
    assert _commands(stack, broadcast_id) == 0  # nothing was issued: no speaker can play it yet
    village.goto(base + "/approvals")
    assert "等待上级审批" in village.text_content("#pending")

    operator = _login(browser, base, "operator", "operator-password-1")
    assert operator.text_content("#approvals-badge") == "1"
    operator.click("#nav-approvals")
    operator.wait_for_url(re.compile(r".*/approvals$"))
    card = f"article[data-approval][data-kind=broadcast]:has(a:text('#{broadcast_id}'))"
    assert "明天上午九点" in operator.text_content(card)
    operator.fill(f"{card} form.approve input[name=comment]", "同意播出")
    SHOTS.mkdir(parents=True, exist_ok=True)
    operator.screenshot(path=str(SHOTS / "approvals.png"), full_page=True)
    operator.click(f"{card} button[data-action=approve]")
    operator.wait_for_selector("#notice")
    assert operator.query_selector("#approvals-badge") is None

    wait_for(lambda: _played(stack, broadcast_id), 60, "the speaker to play the approved notice")
    assert stack.delivery(broadcast_id, AGENT).state in ("playing", "finished")
    wait_for(lambda: stack.delivery(broadcast_id, AGENT).state == "finished", 60, "the finished receipt")

    admin = _login(browser, base, "admin", "admin-password-123")
    admin.goto(base + "/audit?person=operator")
    assert admin.get_attribute("#verdict", "data-ok") == "yes"
    actions = admin.eval_on_selector_all("#events tr[data-action]", "rows => rows.map(r => r.dataset.action)")
    assert "approval.approve" in actions
    admin.goto(base + "/audit")
    admin.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
    actions = admin.eval_on_selector_all("#events tr[data-action]", "rows => rows.map(r => r.dataset.action)")
    assert {"approval.submit", "approval.approve", "broadcast.create"} <= set(actions)
