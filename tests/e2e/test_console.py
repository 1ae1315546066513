"""The console in headless Chromium against `broadcast run --demo`: the README's first command, for real."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.procs import Proc, exe, timeline, url_up, wait_for
from tests.requires import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HUANGSHA = "421224104000"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`broadcast run --demo` on a fresh instance, as a newcomer starts it."""
    tmp = tmp_path_factory.mktemp("demo")
    instance = tmp / "instance"
    port, mqtt_port = free_port(), free_port()
    # No quiet-hours setting: a newcomer's demo must work at any hour (it writes its own settings.toml).
    env = {"BROADCAST_INSTANCE": str(instance), "BROADCAST_TTS_ENGINES": "espeak"}
    server = Proc(
        [exe("broadcast"), "run", "--demo", "--port", str(port), "--mqtt-port", str(mqtt_port)],
        tmp / "run.log",
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: url_up(base + "/login"), 90, "the console")
        match = wait_for(lambda: re.search(r"password \(shown once\):\s+(\S+)", server.output()), 10, "the password")
        yield {"base": base, "password": match.group(1), "instance": instance, "server": server}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright."""
    need(CHROMIUM, "chromium not installed (Debian package `chromium`, with fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def login(page: Any, base: str, password: str) -> None:
    """Log in as the demo admin."""
    page.goto(base + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_wrong_password_is_refused_in_chinese(demo: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    page.goto(demo["base"] + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert page.text_content(".error") == "用户名或密码错误。"
    page.close()


def test_notice_typed_in_console_plays_on_one_township(demo: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    login(page, demo["base"], demo["password"])
    page.fill("#text", "各位村民请注意，今晚有大风降温，请收好晾晒的衣物，关好门窗。")
    page.check(f"input[name=targets][value='{HUANGSHA}']")
    page.click("#send")
    page.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    page.wait_for_selector("#status[data-status=done]", timeout=60_000)
    states = page.eval_on_selector_all("td.state", "cells => cells.map(c => c.dataset.state)")
    assert len(states) == 12, states
    assert set(states) == {"finished"}, states
    assert page.text_content("#status") == "已完成"
    sinks = demo["instance"] / "sinks"
    played = {p.name for p in sinks.iterdir() if any(e["event"] == "started" for e in timeline(p))}
    assert len(played) == 12
    assert all(name.startswith("spk-421224104") for name in played)
    page.close()


def test_speakers_page_shows_the_fleet_online(demo: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    login(page, demo["base"], demo["password"])
    page.goto(demo["base"] + "/speakers")
    assert page.text_content("#online-count") == "24"
    page.close()


def test_compose_fits_a_phone(demo: dict[str, Any], browser: Any) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    login(page, demo["base"], demo["password"])
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.is_visible("#send")
    context.close()


def test_media_is_not_public(demo: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    response = page.goto(demo["base"] + "/media/" + "0" * 64 + ".mp3")
    assert response is not None
    assert response.status == 403
    page.close()
