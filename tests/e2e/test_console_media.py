"""The compose page in Chromium: TTS preview with voice and speed, upload with progress, microphone recording."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audio import espeak_wav
from tests.conftest import free_port
from tests.e2e.procs import Proc, exe, url_up, wait_for
from tests.e2e.test_console import CHROMIUM, CHROMIUM_ARGS
from tests.requires import need

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
FAKE_MIC = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`broadcast run` on a seeded county (no speakers running: this is about the clip, not the fleet)."""
    from broadcast import demo
    from broadcast.platform import Platform
    from broadcast.setup import initialize

    tmp = tmp_path_factory.mktemp("compose")
    instance = tmp / "instance"
    platform = Platform.from_settings(instance, {})
    initialize(platform, "admin", "admin-password-123")
    with platform.db.transaction() as session:
        demo.seed(session)
    platform.close()
    port, mqtt_port = free_port(), free_port()
    env = {"BROADCAST_INSTANCE": str(instance), "BROADCAST_QUIET_HOURS": "", "BROADCAST_TTS_ENGINES": "espeak"}
    proc = Proc([exe("broadcast"), "run", "--port", str(port), "--mqtt-port", str(mqtt_port)], tmp / "run.log", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: url_up(base + "/login"), 90, "the console")
        yield {"base": base, "tmp": tmp}
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def page(server: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page in Chromium whose fake microphone speaks Mandarin."""
    need(CHROMIUM, "chromium not installed (Debian package `chromium`, with fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    mic = espeak_wav(server["tmp"], "我是村委会，请大家注意防火，不要在山上烧纸。")
    with sync_playwright() as p:
        args = [*CHROMIUM_ARGS, *FAKE_MIC, f"--use-file-for-fake-audio-capture={mic}"]
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        context = browser.new_context(permissions=["microphone"], bypass_csp=True)  # lets the test evaluate JS
        tab = context.new_page()
        tab.goto(server["base"] + "/login")
        tab.fill("input[name=username]", "admin")
        tab.fill("input[name=password]", "admin-password-123")
        tab.click("button[type=submit]")
        tab.wait_for_url(server["base"] + "/")
        yield tab
        browser.close()


def preview_lufs(tab: Any) -> float:
    """The loudness the preview shows."""
    text = tab.text_content("#preview-info")
    match = re.search(r"响度 (-?[\d.]+) LUFS", text or "")
    assert match, text
    return float(match.group(1))


def waveform_drawn(tab: Any) -> bool:
    """True when the waveform canvas has red bars on it."""
    return bool(
        tab.evaluate(
            """() => { const c = document.getElementById('waveform');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 for (let i = 0; i < d.length; i += 4) { if (d[i] > 150 && d[i + 1] < 60) return true; }
                 return false; }"""
        )
    )


def test_tts_preview_with_voice_and_speed(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["base"] + "/")
    assert page.locator("#voice option").count() >= 1
    page.fill("#text", "各位村民请注意，明天上午九点在村委会召开会议。")
    page.click("#preview-tts")
    page.wait_for_selector("#preview:not([hidden])")
    assert abs(preview_lufs(page) - -16.0) <= 0.5
    assert waveform_drawn(page)
    normal_ms = float(re.search(r"时长 ([\d.]+) 秒", page.text_content("#preview-info")).group(1))  # type: ignore[union-attr]
    first = page.get_attribute("#preview", "data-clip")
    page.fill("#rate", "1.5")
    page.dispatch_event("#rate", "input")
    page.click("#preview-tts")
    page.wait_for_function(f"document.getElementById('preview').dataset.clip !== '{first}'")
    fast_ms = float(re.search(r"时长 ([\d.]+) 秒", page.text_content("#preview-info")).group(1))  # type: ignore[union-attr]
    assert fast_ms < normal_ms * 0.85
    # The audio element can load the clip with the console session.
    assert page.evaluate("fetch(document.getElementById('preview-audio').src).then(r => r.status)") == 200


def test_empty_text_shows_the_error(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["base"] + "/")
    page.click("#preview-tts")
    page.wait_for_function("document.getElementById('clip-error').textContent.length > 0")
    assert page.text_content("#clip-error") == "没有可以朗读的文字。"


def test_upload_shows_progress_then_preview(page: Any, server: dict[str, Any], tmp_path: Path) -> None:
    from tests.media.conftest import convert

    m4a = convert(espeak_wav(tmp_path, "村民们请注意防火。"), tmp_path / "memo.m4a", "m4a")
    page.goto(server["base"] + "/")
    page.click(".tab[data-tab=upload]")
    page.set_input_files("#file", str(m4a))
    page.wait_for_selector("#preview:not([hidden])")
    assert "原始格式 m4a" in (page.text_content("#preview-info") or "")
    assert abs(preview_lufs(page) - -16.0) <= 0.5
    page.check("input[name=targets][value='421224104000']")
    page.click("#send")
    page.wait_for_url(re.compile(r".*/broadcasts/\d+$"))
    assert page.locator("td.state").count() == 12


def test_bad_upload_shows_a_chinese_error(page: Any, server: dict[str, Any], tmp_path: Path) -> None:
    fake = tmp_path / "notice.mp3"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(3000))
    page.goto(server["base"] + "/")
    page.click(".tab[data-tab=upload]")
    page.set_input_files("#file", str(fake))
    page.wait_for_function("document.getElementById('clip-error').textContent.length > 0")
    assert "不是" in (page.text_content("#clip-error") or "")
    assert page.is_hidden("#preview")


def test_recording_with_the_microphone(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["base"] + "/")
    page.click(".tab[data-tab=record]")
    page.click("#record-start")
    page.wait_for_timeout(3500)
    page.click("#record-stop")
    page.wait_for_selector("#preview:not([hidden])", timeout=30_000)
    assert "原始格式 webm" in (page.text_content("#preview-info") or "")
    assert abs(preview_lufs(page) - -16.0) <= 0.5
