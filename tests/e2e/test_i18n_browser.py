"""The English console in headless Chromium: a user switches language in the header, and every page, form error
and script follows that choice (not the browser's). Writes docs/screenshots/console-en.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_console import browser, demo, login  # noqa: F401  (fixtures of the demo run)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NOTICE = "Attention: the village meeting moves to nine o'clock tomorrow morning."
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_a_user_switches_the_console_to_english(demo: dict[str, Any], browser: Any) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")  # a Chinese browser
    login(page, demo["base"], demo["password"])
    assert "播发记录" in (page.text_content("header nav") or "")
    page.click("#language button[value=en]")
    page.wait_for_selector("html[lang=en]")
    nav = page.text_content("header nav") or ""
    for word in ("New broadcast", "Broadcasts", "Schedules", "Speakers", "Warnings", "Audit log"):
        assert word in nav
    assert not CJK.search(nav)

    page.goto(demo["base"] + "/")
    assert page.title() == "New broadcast · Smart Broadcast Platform"
    page.fill("#text", NOTICE)
    with page.expect_response(lambda r: r.url.endswith("/send")) as answer:
        page.click("#send")  # no area chosen
    assert answer.value.status == 422
    error = page.text_content("#form-error") or ""
    assert "Choose at least one region or speaker." in error
    assert page.input_value("#text") == NOTICE  # the typed text is kept
    assert page.is_enabled("#send")
    page.screenshot(path=str(SHOTS / "console-en.png"), full_page=True)

    page.goto(demo["base"] + "/speakers")  # a page whose script rewrites its cells keeps them English
    page.wait_for_selector("#speakers .online")
    assert page.text_content("#speakers .online") in ("Online", "Offline")
    page.goto(demo["base"] + "/broadcasts/999999")
    assert "Something went wrong" in (page.text_content("h1") or "")
    page.click("#language button[value=zh]")  # and back
    page.wait_for_selector("html[lang=zh-CN]")
    assert "播发记录" in (page.text_content("header nav") or "")
    page.close()
