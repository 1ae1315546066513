"""The console without dead ends: inline form errors, titles, history columns, one time zone, no stale 正在播放."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from broadcast.models import Broadcast, Clip, Delivery, Speaker
from media import MediaConfig
from media.tts import SynthJob, SynthOutput, TtsEngine, Voice, register, unregister
from tests.audio import espeak_wav
from tests.broadcast.conftest import HUANGSHA, HUANGSHA_VILLAGE, seed_county
from tests.broadcast.test_console import csrf_of, log_in
from tests.conftest import make_app

NOTICE = "各位村民请注意，今晚有大风降温，请收好晾晒的衣物，关好门窗，看好老人和孩子，不要在河边停留。"


@pytest.fixture
def operator(client: Any, app: Any) -> Any:
    """A logged-in township operator on the demo county."""
    seed_county(app)
    log_in(client, "operator", "operator-password-1")
    return client


def form(client: Any, **fields: Any) -> dict[str, Any]:
    """The compose form as a browser posts it, with a fresh CSRF token."""
    return {"csrf_token": csrf_of(client.get("/").get_data(as_text=True)), "targets": [HUANGSHA_VILLAGE], **fields}


def rows(app: Any, model: Any) -> int:
    """How many rows a table holds."""
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(model))


def sent(client: Any, **fields: Any) -> int:
    """Send through the form; the broadcast id from the redirect."""
    response = client.post("/send", data=form(client, **fields))
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[-1])


def test_a_refused_form_comes_back_with_everything_typed(operator: Any, app: Any) -> None:
    assert sent(operator, text="试一下。", volume="50")  # the same form with good values goes through
    before = (rows(app, Broadcast), rows(app, Clip))
    response = operator.post(
        "/send",
        data=form(operator, text=NOTICE, volume="999", repeat="3", priority="urgent", title="大风降温提醒"),
    )
    assert response.status_code == 422  # the same page again, not a redirect to 出错了
    page = response.get_data(as_text=True)
    assert 'id="form-error"' in page
    assert "音量" in re.search(r'id="form-error"[^>]*>([^<]+)', page).group(1)  # type: ignore[union-attr]
    assert "出错了" not in page
    assert f">{NOTICE}</textarea>" in page
    assert 'value="大风降温提醒"' in page
    assert 'name="repeat" min="1" max="10" value="3"' in page
    assert 'value="urgent" selected' in page
    assert f'value="{HUANGSHA_VILLAGE}" checked' in page
    assert f'value="{HUANGSHA}" checked' not in page
    assert (rows(app, Broadcast), rows(app, Clip)) == before  # and nothing was made


def test_an_empty_notice_is_refused_inline(operator: Any, app: Any) -> None:
    response = operator.post("/send", data=form(operator, text="  ", start_at="2026-13-45T99:00"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="form-error"' in page
    assert 'value="2026-13-45T99:00"' in page  # what was typed, even when it is wrong
    assert rows(app, Broadcast) == 0


def test_a_previewed_clip_survives_a_refusal(operator: Any, app: Any) -> None:
    clip = operator.post(
        "/api/v1/clips", json={"text": NOTICE}, headers={"X-CSRFToken": csrf_of(operator.get("/").get_data(True))}
    )
    assert clip.status_code == 201
    clip_id = clip.get_json()["id"]
    response = operator.post("/send", data=form(operator, clip_id=str(clip_id), repeat="0"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="clip_id" value="{clip_id}"' in page
    assert 'id="kept-clip"' in page
    assert sent(operator, clip_id=str(clip_id)) > 0  # and it can go out as it is


def test_no_right_to_a_region_is_still_its_own_page(operator: Any) -> None:
    refused = operator.post("/send", data=form(operator, text=NOTICE, targets=["421224205000"]))
    assert refused.status_code == 403
    assert "出错了" in refused.get_data(as_text=True)


def test_an_upload_is_titled_by_its_file_name(operator: Any, app: Any, tmp_path: Path) -> None:
    wav = espeak_wav(tmp_path, "防汛通知").read_bytes()
    data = form(operator, file=(io.BytesIO(wav), "防汛通知.wav"))
    response = operator.post("/send", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    token = csrf_of(operator.get("/").get_data(True))
    untitled = operator.post(
        "/api/v1/clips", data={"file": (io.BytesIO(wav), "x.wav")}, headers={"X-CSRFToken": token}
    ).get_json()
    assert untitled["title"] == f"上传录音 #{untitled['id']}"  # never an empty 内容
    with app.extensions["platform"].db.transaction() as session:
        titles = set(session.scalars(select(Clip.title)))
    assert "防汛通知" in titles
    history = operator.get("/broadcasts").get_data(as_text=True)
    assert ">防汛通知</td>" in history


def test_history_has_date_sender_counts_and_an_ellipsis(operator: Any, app: Any) -> None:
    ident = sent(operator, text=NOTICE)
    page = operator.get("/broadcasts").get_data(as_text=True)
    row = re.search(rf'<tr data-broadcast="{ident}">(.*?)</tr>', page, re.S)
    assert row
    cells = dict(re.findall(r'data-label="([^"]+)"[^>]*>(.*?)</td>', row.group(1), re.S))
    assert cells["发送人"] == "operator"
    assert cells["播完/总数"] == "0/4"  # 4 speakers in 黄沙村, none finished yet
    assert cells["失败"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cells["时间"])
    assert cells["内容"].endswith("…")
    assert len(cells["内容"]) == 40
    assert NOTICE.startswith(cells["内容"][:-1])
    assert re.search(r'title="([^"]+)"', row.group(1)).group(1).endswith("…")  # type: ignore[union-attr]


def test_every_page_shows_the_deployments_time(operator: Any, app: Any) -> None:
    zone = ZoneInfo(app.extensions["platform"].settings["TIMEZONE"])
    start = (datetime.now(zone) + timedelta(days=2)).replace(hour=9, minute=30, second=0, microsecond=0)
    typed = start.strftime("%Y-%m-%dT%H:%M")
    ident = sent(operator, text="定时通知。", start_at=typed)
    shown = start.strftime("%Y-%m-%d %H:%M")
    assert f'class="when">{shown}</td>' in operator.get("/broadcasts").get_data(as_text=True)
    page = operator.get(f"/broadcasts/{ident}").get_data(as_text=True)
    assert f'id="start-at">{shown}</span>' in page
    assert f'data-tz="{zone.key}"' in page  # the page's script formats times in the same zone
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Broadcast, ident).start_at == start.timestamp()  # type: ignore[union-attr]


def _playing(app: Any, speaker_id: str, broadcast_id: int, state: str) -> None:
    """What the worker records: the speaker's state says it plays the broadcast; its delivery is in `state`."""
    with app.extensions["platform"].db.transaction() as session:
        speaker = session.get(Speaker, speaker_id)
        speaker.online = True
        speaker.playing_broadcast_id = str(broadcast_id)
        delivery = session.scalars(
            select(Delivery).where(Delivery.broadcast_id == broadcast_id, Delivery.speaker_id == speaker_id)
        ).one()
        delivery.state = state


def _playing_cell(page: str, speaker_id: str) -> str:
    row = re.search(rf'<tr data-speaker="{speaker_id}">(.*?)</tr>', page, re.S)
    assert row
    cell = re.search(r'class="playing">(.*?)</td>', row.group(1), re.S)
    assert cell
    return cell.group(1)


def test_a_finished_broadcast_is_not_shown_as_playing(operator: Any, app: Any) -> None:
    ident = sent(operator, text="正在播放测试。")
    with app.extensions["platform"].db.transaction() as session:
        speaker_id = session.scalars(select(Delivery.speaker_id).where(Delivery.broadcast_id == ident)).first()
    _playing(app, speaker_id, ident, "playing")
    assert f"#{ident}</a>" in _playing_cell(operator.get("/speakers").get_data(as_text=True), speaker_id)
    live = {s["id"]: s for s in operator.get("/speakers/live").get_json()["items"]}
    assert live[speaker_id]["playing"] == ident
    _playing(app, speaker_id, ident, "finished")  # the receipt came; the speaker's state message did not yet
    assert _playing_cell(operator.get("/speakers").get_data(as_text=True), speaker_id) == ""
    live = {s["id"]: s for s in operator.get("/speakers/live").get_json()["items"]}
    assert live[speaker_id]["playing"] is None


class FakeOnlineEngine(TtsEngine):
    """FAKE: an online engine whose service cannot be reached (edge-tts without internet, made certain)."""

    name = "fake-online"
    label_zh = "在线合成（测试用，连不上）"
    online = True

    def voices(self, config: MediaConfig) -> list[Voice]:
        return [Voice(self.name, "fake-xiaoxiao", "晓晓（测试）", online=True)]

    def default_voice(self, config: MediaConfig) -> str:
        return "fake-xiaoxiao"

    def synthesize(self, job: SynthJob) -> SynthOutput:
        raise OSError("connection refused")


@pytest.fixture
def offline_chain(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """An app whose first TTS engine is unreachable, then espeak-ng; logged in as the operator."""
    register(FakeOnlineEngine())
    application = make_app(tmp_path / "instance", sqlite_url, TTS_ENGINES="fake-online,espeak")
    seed_county(application)
    client = application.test_client()
    log_in(client, "operator", "operator-password-1")
    yield client
    application.extensions["platform"].close()
    unregister("fake-online")


def test_the_voice_really_used_is_shown_with_a_warning(offline_chain: Any) -> None:
    client = offline_chain
    token = {"X-CSRFToken": csrf_of(client.get("/").get_data(True))}
    espeak = client.post("/api/v1/clips", json={"text": "用离线发音人。", "voice": "cmn"}, headers=token).get_json()
    assert espeak["engine"] == "espeak"
    assert espeak["warnings"] == []  # asked for espeak, got espeak: nothing to warn about
    ident = sent(client, text="晓晓不在线。", voice="fake-xiaoxiao")
    page = client.get(f"/broadcasts/{ident}").get_data(as_text=True)
    assert 'data-warning="tts.voice_fallback"' in page
    used = re.search(r'id="voice-used">([^<]+)<', page)
    assert used
    assert html.unescape(used.group(1)) == "普通话（离线） · 离线合成（espeak-ng）"  # not 晓晓: who really spoke
    again = client.post("/api/v1/clips", json={"text": "晓晓不在线。", "voice": "fake-xiaoxiao"}, headers=token)
    assert again.get_json()["id"] != espeak["id"]
    assert "tts.voice_fallback" in again.get_json()["warnings"]  # tried again, not the stand-in reused silently


def test_the_same_words_under_a_new_title_keep_both_titles(operator: Any, app: Any) -> None:
    first = sent(operator, text=NOTICE)
    second = sent(operator, text=NOTICE, title="大风降温提醒")
    with app.extensions["platform"].db.transaction() as session:
        a, b = (session.get(Clip, session.get(Broadcast, i).clip_id) for i in (first, second))  # type: ignore[union-attr]
        assert (a.id != b.id, a.sha256 == b.sha256) == (True, True)  # type: ignore[union-attr]  # one file, two names
        assert b.title == "大风降温提醒"  # type: ignore[union-attr]
        assert a.title.endswith("…")  # type: ignore[union-attr]
    page = operator.get("/broadcasts").get_data(as_text=True)
    assert ">大风降温提醒</td>" in page


def test_a_too_large_upload_comes_back_to_the_form(tmp_path: Path, sqlite_url: str) -> None:
    application = make_app(tmp_path / "instance", sqlite_url, MAX_UPLOAD_MB=1)
    try:
        seed_county(application)
        client = application.test_client()
        log_in(client, "operator", "operator-password-1")
        small = client.post("/send", data=form(client, text="小文件之前先试文字。"))
        assert small.status_code == 302  # the form works on this app
        huge = FileStorage(io.BytesIO(b"\0" * (3 * 1024 * 1024)), filename="大文件.wav")
        boundary, body = encode_multipart({**form(client, text="留着。"), "targets": HUANGSHA_VILLAGE, "file": huge})
        # encoded here, in memory: the test client would spill a big body to a temporary file it never closes
        response = client.post("/send", data=body, content_type=f"multipart/form-data; boundary={boundary}")
        assert response.status_code == 413
        page = response.get_data(as_text=True)
        assert 'id="form-error"' in page
        assert "1 MB" in page
        assert 'id="compose"' in page  # the form itself, ready to try again
        assert rows(application, Clip) == 1
    finally:
        application.extensions["platform"].close()
