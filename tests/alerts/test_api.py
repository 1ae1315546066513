"""POST /api/v1/alerts on both databases: decisions, area, drills, duplicates, updates, cancels, hostile XML."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from broadcast.alerts.triggers import sign
from broadcast.models import Alert, AuditEvent, Broadcast, Clip, Command, Delivery
from tests.alerts.conftest import HMAC_SECRET
from tests.alerts.corpus import HOSTILE, SENDER, AreaSpec, InfoSpec, cap, cap_time, oversize
from tests.audio import read_wav_mono
from tests.broadcast.conftest import DALU, HUANGSHA, auth

CAP = "application/cap+xml"


def post(client: Any, token: str | None, body: bytes, **headers: str) -> Any:
    """POST a CAP message with a bearer token (or none)."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/api/v1/alerts", data=body, headers={"Content-Type": CAP, **headers})


def huangsha(**info: Any) -> InfoSpec:
    """An info for 黄沙铺镇 by its administrative code."""
    return InfoSpec(areas=[AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA)])], **info)


def rows(app: Any, model: Any, *where: Any) -> list[Any]:
    """All rows of a model (optionally filtered)."""
    with app.extensions["platform"].db.transaction() as session:
        return list(session.scalars(select(model).where(*where)))


def delivered_to(app: Any, broadcast_id: int) -> set[str]:
    """Speaker ids with a delivery of a broadcast."""
    return {d.speaker_id for d in rows(app, Delivery, Delivery.broadcast_id == broadcast_id)}


def test_posting_needs_a_warning_source_token_or_a_signature(alert_app: Any, county: dict[str, Any]) -> None:
    client, tokens = alert_app.test_client(), county["tokens"]
    body = cap(ident="AUTH-1", infos=[huangsha()])
    assert post(client, None, body).status_code == 401
    assert post(client, tokens["viewer"], body).status_code == 403
    assert post(client, tokens["operator"], body).status_code == 403
    assert post(client, None, body, **{"X-Signature": sign("wrong-secret", body)}).status_code == 401
    assert client.post("/api/v1/alerts", data=body, headers={**auth(tokens["warning_source"])}).status_code == 415
    assert rows(alert_app, Alert) == []
    signed = post(client, None, body, **{"X-Signature": sign(HMAC_SECRET, body)})
    assert signed.status_code == 202, signed.json
    assert signed.json["action"] == "broadcast"


def test_an_actual_alert_broadcasts_at_emergency_priority_inside_its_area_only(
    alert_app: Any, county: dict[str, Any]
) -> None:
    client, tokens, speakers = alert_app.test_client(), county["tokens"], county["speakers"]
    response = post(client, tokens["warning_source"], cap(ident="ACT-1", infos=[huangsha()]))
    assert response.status_code == 202, response.json
    body = response.json
    assert body["action"] == "broadcast"
    assert body["reason"] == "policy_auto:level_orange"
    assert delivered_to(alert_app, body["broadcast_id"]) == set(speakers["huangsha"])  # none in 大路乡
    item = rows(alert_app, Broadcast, Broadcast.id == body["broadcast_id"])[0]
    assert (item.priority, item.volume, item.source, item.targets) == ("emergency", 100, "alert", [HUANGSHA])
    clip = rows(alert_app, Clip, Clip.id == item.clip_id)[0]
    assert clip.text.startswith("暴雨橙色预警。")
    # the attention tone went out first, as a broadcast of its own to the same speakers
    alert = rows(alert_app, Alert)[0]
    tone = rows(alert_app, Broadcast, Broadcast.id == alert.tone_broadcast_id)[0]
    assert tone.id < item.id
    assert tone.start_at <= item.start_at
    assert (tone.priority, tone.targets) == ("emergency", [HUANGSHA])
    assert 1900 <= rows(alert_app, Clip, Clip.id == tone.clip_id)[0].duration_ms <= 2100  # the 2 s default
    assert delivered_to(alert_app, tone.id) == set(speakers["huangsha"])
    # ... and its command was issued before the speech was even synthesized (the tone never waits for TTS)
    tone_command = rows(alert_app, Command, Command.broadcast_id == tone.id)[0]
    assert tone_command.issued_at < clip.created_at.timestamp()
    # ... to start ALERT_TONE_LEAD_MS (700 ms) after it is sent, whatever START_LEAD_MS says (300 ms in the
    # tests): speakers hold the tone, so only its small command must reach them
    assert 0.6 <= tone.start_at - tone_command.issued_at <= 0.75
    # the speech, synthesized while the tone sounds, is due the instant the tone ends (or, synthesized after
    # that, the tone's lead after it is sent)
    tone_s = rows(alert_app, Clip, Clip.id == tone.clip_id)[0].duration_ms / 1000
    speech_command = rows(alert_app, Command, Command.broadcast_id == item.id)[0]
    assert item.start_at == pytest.approx(max(tone.start_at + tone_s, speech_command.issued_at + 0.7), abs=0.001)
    view = client.get(f"/api/v1/alerts/{body['alert_id']}", headers=auth(tokens["admin"])).json
    assert [d["action"] for d in view["decisions"]] == ["received", "broadcast"]
    assert view["coverage"]["speakers"] == len(speakers["huangsha"])
    assert set(view["coverage"]["townships"]) == {HUANGSHA}
    assert view["coverage"]["offline"] == len(speakers["huangsha"])  # no speaker is connected in this test
    assert "<alert" in rows(alert_app, Alert)[0].raw  # the raw message is kept for audit


def test_a_duplicate_is_ignored_and_plays_once(alert_app: Any, county: dict[str, Any]) -> None:
    client, token = alert_app.test_client(), county["tokens"]["warning_source"]
    sent = datetime.now(UTC)
    first = post(client, token, cap(ident="DUP-1", sent=sent, infos=[huangsha()])).json
    again = post(client, token, cap(ident="DUP-1", sent=sent, infos=[huangsha()])).json
    assert again == {**first, "action": "duplicate", "reason": "duplicate"}
    assert len(rows(alert_app, Broadcast)) == 2  # the tone and the speech of the first, nothing for the second
    # the same message with its sent time in another offset is the same message
    same_instant = post(client, token, cap(ident="DUP-1", sent=sent.astimezone(UTC), infos=[huangsha()])).json
    assert same_instant["action"] == "duplicate"


@pytest.mark.parametrize("status", ["Exercise", "Test"])
def test_drills_reach_only_speakers_flagged_for_tests(alert_app: Any, county: dict[str, Any], status: str) -> None:
    client, token, speakers = alert_app.test_client(), county["tokens"]["warning_source"], county["speakers"]
    body = post(client, token, cap(ident=f"{status}-1", status=status, infos=[huangsha()])).json
    assert body["action"] == "broadcast"
    assert delivered_to(alert_app, body["broadcast_id"]) == {speakers["huangsha"][0]}  # the one drill speaker
    prefix = "演练：" if status == "Exercise" else "测试："
    assert rows(alert_app, Alert)[0].text.startswith(prefix)


@pytest.mark.parametrize("status", ["System", "Draft"])
def test_system_and_draft_are_logged_only(alert_app: Any, county: dict[str, Any], status: str) -> None:
    body = post(alert_app.test_client(), county["tokens"]["warning_source"], cap(ident="S-1", status=status)).json
    assert (body["action"], body["reason"]) == ("ignored", f"status_{status.lower()}")
    assert rows(alert_app, Broadcast) == []


def test_expired_alerts_are_not_played(alert_app: Any, county: dict[str, Any]) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    body = post(alert_app.test_client(), county["tokens"]["warning_source"], cap(infos=[huangsha(expires=past)])).json
    assert (body["action"], body["reason"]) == ("ignored", "expired")
    assert rows(alert_app, Broadcast) == []


def test_update_replaces_the_playing_alert_and_cancel_stops_it(alert_app: Any, county: dict[str, Any]) -> None:
    client, token, speakers = alert_app.test_client(), county["tokens"]["warning_source"], county["speakers"]
    sent = datetime.now(UTC) - timedelta(minutes=2)
    first = post(client, token, cap(ident="CHAIN-1", sent=sent, infos=[huangsha()])).json
    ref1 = f"{SENDER},CHAIN-1,{cap_time(sent)}"
    update = cap(ident="CHAIN-2", msg_type="Update", references=ref1, infos=[huangsha(headline="暴雨红色预警")])
    second = post(client, token, update).json
    assert second["action"] == "updated"
    assert second["broadcast_id"] != first["broadcast_id"]
    stops = rows(alert_app, Command, Command.kind == "stop")
    assert [s.body["body"]["broadcast_id"] for s in stops] == [str(first["broadcast_id"])]
    old = rows(alert_app, Alert, Alert.id == first["alert_id"])[0]
    assert (old.state, old.replaced_by) == ("superseded", second["alert_id"])
    assert {d.state for d in rows(alert_app, Delivery, Delivery.broadcast_id == first["broadcast_id"])} == {"failed"}
    assert old.tone_broadcast_id is not None
    assert rows(alert_app, Alert, Alert.id == second["alert_id"])[0].tone_broadcast_id is None  # no second tone

    cancel = cap(ident="CHAIN-3", msg_type="Cancel", references=ref1, infos=[huangsha()])
    third = post(client, token, cancel).json
    assert third["action"] == "cancelled"
    stops = rows(alert_app, Command, Command.kind == "stop")
    # the whole chain: the first speech (stopped by the Update), the update's speech and the first alert's tone
    assert sorted(s.body["body"]["broadcast_id"] for s in stops) == sorted(
        [str(first["broadcast_id"]), str(second["broadcast_id"]), str(old.tone_broadcast_id)]
    )
    assert {d.state for d in rows(alert_app, Delivery, Delivery.broadcast_id == old.tone_broadcast_id)} == {"failed"}
    assert rows(alert_app, Alert, Alert.id == second["alert_id"])[0].state == "cancelled"
    notice = rows(alert_app, Broadcast, Broadcast.id == third["broadcast_id"])[0]
    assert notice.priority == "urgent"
    assert delivered_to(alert_app, notice.id) == set(speakers["huangsha"])
    assert "解除" in rows(alert_app, Clip, Clip.id == notice.clip_id)[0].text


def test_held_alerts_wait_for_an_operator(alert_app: Any, county: dict[str, Any]) -> None:
    client, tokens = alert_app.test_client(), county["tokens"]
    body = post(client, tokens["warning_source"], cap(ident="HOLD-1", infos=[huangsha(headline="暴雨黄色预警")])).json
    assert (body["action"], body["reason"]) == ("held", "policy_hold:level_yellow")
    assert rows(alert_app, Broadcast) == []
    held = client.get("/api/v1/alerts?state=held", headers=auth(tokens["admin"])).json["items"]
    assert [a["id"] for a in held] == [body["alert_id"]]
    url = f"/api/v1/alerts/{body['alert_id']}/confirm"
    assert client.post(url, headers=auth(tokens["viewer"])).status_code == 403
    released = client.post(url, headers=auth(tokens["operator"]))
    assert released.status_code == 202, released.json
    assert released.json["reason"] == "confirmed_by:operator"
    assert delivered_to(alert_app, released.json["broadcast_id"]) == set(county["speakers"]["huangsha"])
    assert client.post(url, headers=auth(tokens["operator"])).status_code == 409


def test_an_area_that_resolves_to_nothing_is_held_never_guessed(alert_app: Any, county: dict[str, Any]) -> None:
    client, tokens = alert_app.test_client(), county["tokens"]
    beijing = InfoSpec(areas=[AreaSpec(desc="北京东城", geocodes=[("行政区划代码", "110101")])])
    body = post(client, tokens["warning_source"], cap(ident="AREA-1", infos=[beijing])).json
    assert (body["action"], body["reason"]) == ("held", "area_unresolved")
    url = f"/api/v1/alerts/{body['alert_id']}/confirm"
    assert client.post(url, headers=auth(tokens["admin"])).json["error"]["code"] == "alert.targets_required"
    outside = client.post(url, json={"targets": [DALU]}, headers=auth(tokens["operator"]))  # 黄沙铺镇's operator
    assert outside.status_code == 404  # an unresolved area is the admins' to name: operators do not see it
    assert rows(alert_app, Alert)[0].state == "held"  # refused, nothing changed
    released = client.post(url, json={"targets": [DALU]}, headers=auth(tokens["admin"])).json
    assert delivered_to(alert_app, released["broadcast_id"]) == set(county["speakers"]["dalu"])


def test_a_polygon_reaches_the_speakers_inside_it(alert_app: Any, county: dict[str, Any]) -> None:
    ring = "29.59,114.49 29.62,114.49 29.62,114.52 29.59,114.52 29.59,114.49"
    info = InfoSpec(areas=[AreaSpec(desc="黄沙铺镇一带", geocodes=[], polygons=[ring])])
    body = post(alert_app.test_client(), county["tokens"]["warning_source"], cap(ident="POLY-1", infos=[info])).json
    assert body["action"] == "broadcast"
    assert delivered_to(alert_app, body["broadcast_id"]) == set(county["speakers"]["huangsha"])


def test_a_speech_synthesized_after_its_tone_ended_starts_a_tone_lead_after_it_is_sent(
    alert_app: Any, county: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: the synthesis outlasts the tone (the clock jumps 2 min while it runs): not "in the past", not held."""
    import time

    from broadcast.services import alerts as alerts_service

    real_time, jump = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + jump[0])
    real_from_text = alerts_service.clips.from_text

    def slow_from_text(*args: Any, **kwargs: Any) -> Any:
        clip = real_from_text(*args, **kwargs)
        jump[0] = 120.0
        return clip

    monkeypatch.setattr(alerts_service.clips, "from_text", slow_from_text)
    body = post(alert_app.test_client(), county["tokens"]["warning_source"], cap(ident="SLOW-TTS-1",
                infos=[huangsha()])).json  # fmt: skip
    assert body["action"] == "broadcast", body
    item = rows(alert_app, Broadcast, Broadcast.id == body["broadcast_id"])[0]
    tone = rows(alert_app, Broadcast, Broadcast.id == rows(alert_app, Alert)[0].tone_broadcast_id)[0]
    speech_command = rows(alert_app, Command, Command.broadcast_id == item.id)[0]
    assert item.start_at > tone.start_at + 100
    assert 0.6 <= item.start_at - speech_command.issued_at <= 0.75


@contextlib.contextmanager
def county_app(tmp_path: Any, database_url: str, **settings: Any) -> Iterator[tuple[Any, dict[str, str]]]:
    """An app of its own with these settings: the county seeded, its speakers placed, a warning source's token."""
    from broadcast.services import accounts
    from tests.alerts.conftest import place_speakers
    from tests.broadcast.conftest import seed_county
    from tests.conftest import free_port, make_app

    app = make_app(tmp_path / "i", database_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", **settings)
    try:
        tokens = seed_county(app)
        place_speakers(app)
        with app.extensions["platform"].db.transaction() as session:
            user = accounts.create_user(session, "feed9", "feed9-password-1", "warning_source", None)
            tokens["warning_source"] = accounts.create_token(session, user)
        yield app, tokens
    finally:
        app.extensions["platform"].close()


def test_the_speech_is_spoken_once_in_its_file_and_repeated_by_the_speakers(tmp_path: Any, database_url: str) -> None:
    """ALERT_REPEAT=3: each speaker downloads a third of the bytes; a lower routine MAX_REPEAT does not cap it."""
    from broadcast.services import clips

    with county_app(tmp_path, database_url, ALERT_REPEAT=3, MAX_REPEAT=2) as (app, tokens):
        body = post(app.test_client(), tokens["warning_source"], cap(ident="REPEAT-1", infos=[huangsha()])).json
        assert body["action"] == "broadcast", body
        item = rows(app, Broadcast, Broadcast.id == body["broadcast_id"])[0]
        assert item.repeat == 3
        command = rows(app, Command, Command.broadcast_id == item.id)[0]
        assert command.body["body"]["repeat"] == 3
        clip = rows(app, Clip, Clip.id == item.clip_id)[0]
        platform = app.extensions["platform"]
        with platform.db.transaction() as session:  # the same text spoken once is the very same file
            once = clips.from_text(session, platform.media_store, platform.media, clip.text, user=None)
        assert once.sha256 == clip.sha256
        assert command.expires_at >= item.start_at + 3 * clip.duration_ms / 1000


def test_the_attention_tone_lasts_alert_tone_s(tmp_path: Any, database_url: str) -> None:
    """A county that wants an EAS-length signal sets a longer tone: the clip really is that long."""
    with county_app(tmp_path, database_url, ALERT_TONE_S=5) as (app, tokens):
        body = post(app.test_client(), tokens["warning_source"], cap(ident="LONG-TONE-1", infos=[huangsha()])).json
        assert body["action"] == "broadcast"
        tone = rows(app, Broadcast, Broadcast.id == rows(app, Alert)[0].tone_broadcast_id)[0]
        clip = rows(app, Clip, Clip.id == tone.clip_id)[0]
        samples = read_wav_mono(app.extensions["platform"].media_store.path(clip.sha256), 16000)  # ffmpeg decodes
        measured = len(samples) / 16000
        assert 4.9 <= measured <= 5.2, measured  # the stored file itself, not the setting echoed
        assert float(abs(samples).max()) > 0.1  # and it is a tone, not silence
        assert abs(clip.duration_ms / 1000 - measured) < 0.1


def test_emergency_alerts_ignore_quiet_hours(tmp_path: Any, database_url: str) -> None:
    hour = datetime.now(UTC).hour
    quiet = f"{(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00"  # in force for the next hour at least
    with county_app(tmp_path, database_url, QUIET_HOURS=quiet, TIMEZONE="UTC") as (app, tokens):
        client = app.test_client()
        clip = client.post("/api/v1/clips", json={"text": "例行广播"}, headers=auth(tokens["admin"])).json
        routine = client.post(
            "/api/v1/broadcasts", json={"clip_id": clip["id"], "targets": [HUANGSHA]}, headers=auth(tokens["admin"])
        )
        assert routine.json["error"]["code"] == "quiet_hours"  # the window is in force now
        alert = post(client, tokens["warning_source"], cap(ident="NIGHT-1", infos=[huangsha()])).json
        assert alert["action"] == "broadcast"


@pytest.mark.parametrize("name", [*sorted(HOSTILE), "oversize_10mb", "malformed", "invalid_cap"])
def test_hostile_and_invalid_xml_is_refused_and_only_audited(alert_app: Any, county: dict[str, Any], name: str) -> None:
    client, token = alert_app.test_client(), county["tokens"]["warning_source"]
    assert post(client, token, cap(ident="OK-1", infos=[huangsha()])).status_code == 202  # the path works
    before = rows(alert_app, Alert)
    body = {
        "oversize_10mb": oversize(10),
        "malformed": b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>",
        "invalid_cap": cap(ident="BAD-1", status="Real"),
    }.get(name) or HOSTILE[name]
    response = post(client, token, body, **{"Accept-Language": "zh"})
    assert response.status_code == 400
    assert set(response.json) == {"error"}
    assert response.json["error"]["code"].startswith("alert.")
    assert response.json["error"]["message"]
    assert [a.id for a in rows(alert_app, Alert)] == [a.id for a in before]
    rejected = rows(alert_app, AuditEvent, AuditEvent.action == "alert.rejected")
    assert len(rejected) == 1
    assert rejected[0].detail["code"] == response.json["error"]["code"]
    english = post(client, token, body, **{"Accept-Language": "en"})
    assert english.json["error"]["message"].isascii()


def test_the_audit_log_has_every_decision(alert_app: Any, county: dict[str, Any]) -> None:
    client, token = alert_app.test_client(), county["tokens"]["warning_source"]
    post(client, token, cap(ident="AUD-1", infos=[huangsha()]))
    post(client, token, cap(ident="AUD-2", status="System"))
    with alert_app.extensions["platform"].db.transaction() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("alert.%"))).all()
        assert session.scalar(select(func.count()).select_from(Alert)) == 2
    assert sorted(actions) == ["alert.broadcast", "alert.ignored", "alert.received", "alert.received"]


def test_the_launch_is_foreground_work_while_it_sends_the_tone_and_synthesizes_the_speech(
    alert_app: Any, county: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipt consumer and writer of this process stand aside while the speech is synthesized."""
    from broadcast.foreground import FOREGROUND
    from broadcast.services import clips

    seen: list[float] = []
    real = clips.from_text

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(FOREGROUND.wait_clear(0.05))  # a background thread would have to wait now
        return real(*args, **kwargs)

    monkeypatch.setattr(clips, "from_text", spy)
    response = post(alert_app.test_client(), county["tokens"]["warning_source"], cap(ident="FG-1", infos=[huangsha()]))
    assert response.json["action"] == "broadcast"
    assert len(seen) == 1
    assert seen[0] >= 0.05, "the launch holds background threads off"
    assert FOREGROUND.wait_clear(5.0) == 0.0, "and lets them go once it is over"
