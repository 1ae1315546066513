"""The console in headless Chromium without dead ends: a refused form keeps the notice, and on a 390 px phone
终端状态 and 播发记录 keep state and counts in view (cards, not hidden columns). Writes docs/screenshots/."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.audio import espeak_wav
from tests.conftest import free_port
from tests.e2e.procs import exe
from tests.e2e.test_console import HUANGSHA, browser, demo, login  # noqa: F401  (fixtures of the demo run)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
NOTICE = "各位村民请注意：明天上午九点在村委会召开防汛会议，请各户派一名代表参加，不要迟到。"


def visible_in_viewport(page: Any, selector: str, width: int) -> list[str]:
    """Problems of every element matching SELECTOR: hidden, zero-sized or outside the viewport's width."""
    problems = []
    elements = page.query_selector_all(selector)
    assert elements, f"nothing matches {selector}"
    for element in elements:
        text = (element.text_content() or "").strip()
        shown = element.evaluate(
            "e => getComputedStyle(e).display !== 'none' && getComputedStyle(e).visibility !== 'hidden'"
        )
        box = element.bounding_box()
        if not shown or box is None or box["width"] <= 0 or box["height"] <= 0:
            problems.append(f"{selector} {text!r}: not shown")
        elif box["x"] < 0 or box["x"] + box["width"] > width:
            problems.append(f"{selector} {text!r}: outside the viewport {box}")
    return problems


@pytest.fixture(scope="module")
def sent(demo: dict[str, Any], browser: Any) -> int:  # noqa: F811
    """One notice sent from the compose page and played to the end by the demo fleet (its id)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, demo["base"], demo["password"])
    page.fill("#text", NOTICE)
    page.fill("#title", "防汛会议通知")
    page.check(f"input[name=targets][value='{HUANGSHA}']")
    page.click("#send")
    page.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    page.wait_for_selector("#status[data-status=done]", timeout=60_000)
    ident = int(page.url.rsplit("/", 1)[-1])
    page.close()
    return ident


def test_a_refused_form_keeps_the_typed_notice(demo: dict[str, Any], browser: Any) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, demo["base"], demo["password"])
    page.screenshot(path=str(SHOTS / "compose.png"), full_page=True)
    assert page.query_selector("#form-error") is None  # a fresh form carries no error
    page.fill("#text", NOTICE)
    page.select_option("select[name=priority]", "urgent")
    with page.expect_response(lambda r: r.url.endswith("/send")) as answer:
        page.click("#send")  # no region chosen
    assert answer.value.status == 422
    page.wait_for_selector("#form-error")
    assert "请至少选择一个播发区域" in page.text_content("#form-error")  # type: ignore[operator]
    assert page.input_value("#text") == NOTICE
    assert page.input_value("select[name=priority]") == "urgent"
    assert page.is_enabled("#send")  # the button is ready again
    page.screenshot(path=str(SHOTS / "compose-error.png"), full_page=True)
    page.check(f"input[name=targets][value='{HUANGSHA}']")  # fix the mistake and send from the same page
    page.click("#send")
    page.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    page.close()


def test_desktop_pages(demo: dict[str, Any], browser: Any, sent: int) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, demo["base"], demo["password"])
    page.goto(f"{demo['base']}/broadcasts/{sent}")
    assert page.text_content("#status") == "已完成"
    assert page.text_content("#voice-used") == "普通话（离线） · 离线合成（espeak-ng）"  # the demo speaks offline
    started = page.eval_on_selector_all("td.started", "cells => cells.map(c => c.textContent)")
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in started), started
    page.screenshot(path=str(SHOTS / "broadcast.png"), full_page=True)
    page.goto(demo["base"] + "/broadcasts")
    assert page.text_content(f"tr[data-broadcast='{sent}'] td.content") == "防汛会议通知"
    assert page.text_content(f"tr[data-broadcast='{sent}'] td.count") == "12/12"
    page.screenshot(path=str(SHOTS / "broadcasts.png"), full_page=True)
    page.goto(demo["base"] + "/speakers")
    page.screenshot(path=str(SHOTS / "speakers.png"), full_page=True)
    page.close()


def test_phone_keeps_state_and_counts_in_view(demo: dict[str, Any], browser: Any, sent: int) -> None:  # noqa: F811
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    login(page, demo["base"], demo["password"])
    page.goto(demo["base"] + "/speakers")
    assert page.text_content("#online-count") == "24"
    assert visible_in_viewport(page, "#speakers td.online", PHONE["width"]) == []
    assert visible_in_viewport(page, "#speakers td.seen", PHONE["width"]) == []
    assert visible_in_viewport(page, "#online-count", PHONE["width"]) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(SHOTS / "speakers-phone.png"))
    page.goto(demo["base"] + "/broadcasts")
    for cell in ("status", "count", "failed", "when", "sender", "content"):
        assert visible_in_viewport(page, f"#history td.{cell}", PHONE["width"]) == [], cell
    assert page.text_content(f"tr[data-broadcast='{sent}'] td.status") == "已完成"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(SHOTS / "broadcasts-phone.png"))
    context.close()


def test_the_password_is_the_last_start_line_and_a_second_start_one_line(demo: dict[str, Any]) -> None:  # noqa: F811
    started = demo["server"].output()
    lines = [line for line in started.splitlines() if line.strip()]
    banner_end = max(i for i, line in enumerate(lines) if line.startswith("=" * 64))
    assert any("password (shown once)" in line for line in lines[banner_end - 4 : banner_end])
    for earlier in ("village-broadcast is running", "MQTT broker:", "simulated speakers started"):
        assert min(i for i, line in enumerate(lines) if earlier in line) < banner_end, earlier
    second = subprocess.run(
        [exe("broadcast"), "run", "--port", str(free_port()), "--mqtt-port", str(free_port())],
        env={**os.environ, "BROADCAST_INSTANCE": str(demo["instance"])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1
    said = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
    assert len(said) == 1, said
    assert "已在运行" in said[0]
    assert "Traceback" not in second.stderr


def test_an_upload_is_named_by_its_file(demo: dict[str, Any], browser: Any, tmp_path: Path) -> None:  # noqa: F811
    recording = espeak_wav(tmp_path, "村委会通知，明天停水。").rename(tmp_path / "停水通知.wav")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, demo["base"], demo["password"])
    page.click(".tab[data-tab=upload]")
    page.set_input_files("#file", str(recording))
    page.wait_for_selector("#preview[data-clip]", timeout=60_000)
    assert page.input_value("#title") == "停水通知"  # the file's name, shown before anything is sent
    page.check(f"input[name=targets][value='{HUANGSHA}']")
    page.click("#send")
    page.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    ident = page.url.rsplit("/", 1)[-1]
    assert page.text_content("#clip-title") == "停水通知"
    page.goto(demo["base"] + "/broadcasts")
    assert page.text_content(f"tr[data-broadcast='{ident}'] td.content") == "停水通知"
    page.close()
