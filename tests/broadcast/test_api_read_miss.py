"""API reads that miss the read cache: Core rows answer exactly as the ORM path did, in a few statements."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.models import Broadcast, Clip, Delivery, Region, Speaker, utcnow
from broadcast.services import accounts, broadcasts, regions, speaker_admin
from broadcast.web.admin_api import speaker_admin_json
from tests.broadcast.conftest import COUNTY, DALU, HUANGSHA, HUANGSHA_VILLAGE, auth
from tests.broadcast.test_input import statements

ROLE_USERS = {"admin": "admin", "operator": "operator", "village_head": "village", "viewer": "viewer"}
PAGE_URLS = (
    "",
    "?per_page=7&page=2",
    f"?region={HUANGSHA}",
    f"?region={HUANGSHA_VILLAGE}",
    f"?region={DALU}",
    f"?region={COUNTY}&per_page=5",
    "?state=retired",
    "?state=disabled",
    "?state=online",
    "?state=offline",
    "?state=never_seen",
    f"?state=offline&region={HUANGSHA}",
)


def _db(app: Any) -> Any:
    return app.extensions["platform"].db


def _vary_speakers(app: Any) -> None:
    """Speakers in every state, with inventory, health and broker fields set, in turn across both townships."""
    now = utcnow()
    with _db(app).transaction() as session:
        towns = Speaker.id.like(f"spk-{HUANGSHA[:9]}%") | Speaker.id.like(f"spk-{DALU[:9]}%")
        for n, speaker in enumerate(session.scalars(select(Speaker).where(towns).order_by(Speaker.id))):
            kind = n % 7  # 6: left as it was seeded (never seen)
            if kind == 0:
                speaker.retired_at, speaker.enabled = now - timedelta(days=1), False
            elif kind == 1:
                speaker.enabled = False
            elif kind == 2:
                speaker.online, speaker.last_seen, speaker.agent_version = True, now, "1.2.3"
                speaker.playing_broadcast_id, speaker.clock_offset_ms, speaker.cache_bytes = "42", -12.5, 2048
                speaker.schedule_synced_at, speaker.rejected_count = now - timedelta(minutes=3), 2
            elif kind == 3:
                speaker.last_seen, speaker.latitude, speaker.longitude = now - timedelta(hours=2), 29.6, 114.5
            elif kind == 4:
                speaker.broker_password_hash, speaker.volume = "x" * 20, 55
            elif kind == 5:
                speaker.test_speaker, speaker.address, speaker.notes, speaker.sim_number = (
                    True,
                    "村委会屋顶",
                    "东侧",
                    "1440",
                )


def _old_page(session: Any, user: Any, query: dict[str, str]) -> dict[str, Any] | None:
    """The answer the ORM path gave: every Speaker loaded, scoped with the region tree in Python (None: 404)."""
    tree = regions.load_tree(session)
    region, state = query.get("region"), query.get("state")
    page, per_page = int(query.get("page", 1)), int(query.get("per_page", 500))
    scope = regions.user_scope(user)
    if region is not None and region not in tree:
        return None
    inner, nothing = scope, False
    if region is not None:
        if regions.within(tree, region, scope):
            inner = region
        elif not regions.within(tree, scope, region):  # type: ignore[arg-type]
            nothing = True

    def kept(speaker: Speaker) -> bool:
        if nothing:
            return False
        if inner is not None and not (
            tree[speaker.grid_code].level == "grid" and regions.within(tree, speaker.grid_code, inner)
        ):
            return False
        shown = speaker_admin.state_of(speaker)
        return shown == state if state is not None else shown != "retired"

    matching = [s for s in session.scalars(select(Speaker).order_by(Speaker.id)) if kept(s)]
    items = [speaker_admin_json(s) for s in matching[(page - 1) * per_page : page * per_page]]
    return {"items": items, "total": len(matching), "page": page, "per_page": per_page}


def _query(url: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in url.lstrip("?").split("&") if part)


def test_a_speakers_page_answers_as_the_orm_path_did(app: Any, client: Any, tokens: dict[str, str]) -> None:
    _vary_speakers(app)
    compared = 0
    for role, name in ROLE_USERS.items():
        for url in PAGE_URLS:
            answer = client.get(f"/api/v1/speakers{url}", headers=auth(tokens[role]))
            with app.app_context(), _db(app).session() as session:
                expected = _old_page(session, accounts.find_user(session, name), _query(url))
                # What jsonify makes of it (ISO strings and numbers as sent), compared field by field below.
                expected = None if expected is None else json.loads(app.json.dumps(expected))
            if expected is None:
                assert answer.status_code == 404, (role, url)
                assert answer.get_json()["error"]["code"] == "not_found"
                continue
            assert answer.status_code == 200, (role, url, answer.get_json())
            got = answer.get_json()
            assert {k: got[k] for k in ("total", "page", "per_page")} == {
                k: expected[k] for k in ("total", "page", "per_page")
            }, (role, url)
            assert [s["id"] for s in got["items"]] == [s["id"] for s in expected["items"]], (role, url)
            for mine, theirs in zip(got["items"], expected["items"], strict=True):
                assert list(mine) == list(theirs)  # same fields in the same order
                for field in theirs:
                    assert mine[field] == theirs[field], (role, url, mine["id"], field)
            compared += len(got["items"])
    assert compared > 100
    admin_states = {
        s["state"]
        for s in client.get("/api/v1/speakers?per_page=1000", headers=auth(tokens["admin"])).get_json()["items"]
    }
    assert admin_states == {"disabled", "online", "offline", "never_seen"}  # the seeded variety reached the API


def test_an_unknown_region_or_state_keeps_its_error(client: Any, tokens: dict[str, str]) -> None:
    unknown = client.get("/api/v1/speakers?region=999999999999", headers=auth(tokens["village_head"], "en"))
    assert unknown.status_code == 404
    assert unknown.get_json()["error"]["code"] == "not_found"
    bad = client.get("/api/v1/speakers?state=asleep", headers=auth(tokens["admin"], "en"))
    assert bad.status_code == 422
    assert bad.get_json()["error"]["code"] == "invalid_state"


def _make_broadcast(client: Any, token: str, targets: list[str]) -> int:
    clip = client.post("/api/v1/clips", json={"text": "请注意防汛。"}, headers=auth(token))
    assert clip.status_code == 201
    made = client.post(
        "/api/v1/broadcasts", json={"clip_id": clip.get_json()["id"], "targets": targets}, headers=auth(token)
    )
    assert made.status_code == 201, made.get_json()
    return made.get_json()["id"]


def _settle_start(app: Any, ident: int) -> None:
    """Put the broadcast's start in the past, so its status cannot change between two reads (sending → playing)."""
    with _db(app).transaction() as session:
        session.get(Broadcast, ident).start_at = time.time() - 100


def _vary_deliveries(app: Any, ident: int, *, finish_all: bool = False) -> None:
    """Deliveries in several states with their times; the start put in the past so the status is settled."""
    _settle_start(app, ident)
    with _db(app).transaction() as session:
        rows = session.scalars(select(Delivery).where(Delivery.broadcast_id == ident).order_by(Delivery.speaker_id))
        for n, delivery in enumerate(rows):
            if finish_all or n % 3 == 0:
                delivery.state, delivery.acknowledged_at, delivery.started_at = "finished", 10.5, 11.25
                delivery.finished_at = 40.0 + n
            elif n % 3 == 1:
                delivery.state, delivery.reason = "failed", "media fetch failed"


def _old_view(app: Any, ident: int) -> dict[str, Any]:
    """The answer the ORM path gave: the Broadcast, its Clip and Delivery objects, the status rolled up on it."""
    with app.app_context(), _db(app).session() as session:
        item = session.get(Broadcast, ident)
        rows = list(
            session.scalars(select(Delivery).where(Delivery.broadcast_id == ident).order_by(Delivery.speaker_id))
        )
        tally: dict[str, int] = {}
        for d in rows:
            tally[d.state] = tally.get(d.state, 0) + 1
        broadcasts.refresh_status(session, item, tally=tally)
        clip = session.get(Clip, item.clip_id)
        names = {r.code: r.name for r in session.scalars(select(Region).where(Region.code.in_(item.targets)))}
        shown = {
            "id": item.id,
            "status": item.status,
            "clip_id": item.clip_id,
            "clip": {"duration_ms": clip.duration_ms, "sha256": clip.sha256, "title": clip.title},
            "priority": item.priority,
            "volume": item.volume,
            "repeat": item.repeat,
            "targets": [{"id": t, "name": names.get(t, t)} for t in item.targets],
            "start_at": item.start_at,
            "expires_at": item.expires_at,
            "created_at": item.created_at.isoformat(),
            "counts": tally,
            "deliveries": [
                {
                    "speaker_id": d.speaker_id,
                    "state": d.state,
                    "acknowledged_at": d.acknowledged_at,
                    "started_at": d.started_at,
                    "finished_at": d.finished_at,
                    "reason": d.reason,
                }
                for d in rows
            ],
        }
        session.rollback()
        return json.loads(app.json.dumps(shown))


def _speaker_in(app: Any, region: str) -> str:
    with _db(app).session() as session:
        return session.scalar(select(Speaker.id).where(Speaker.id.like(f"spk-{region[:9]}%")).order_by(Speaker.id))


def test_a_broadcast_answers_as_the_orm_path_did(app: Any, client: Any, tokens: dict[str, str]) -> None:
    village = _make_broadcast(client, tokens["operator"], [HUANGSHA_VILLAGE])
    mixed = _make_broadcast(client, tokens["admin"], [HUANGSHA, _speaker_in(app, DALU)])
    one = _make_broadcast(client, tokens["admin"], [_speaker_in(app, HUANGSHA_VILLAGE)])
    _vary_deliveries(app, village)
    _vary_deliveries(app, mixed, finish_all=True)
    _settle_start(app, one)  # untouched deliveries, but a start that cannot pass between the API's read and ours
    cases = {
        (village, "admin"): True,
        (village, "operator"): True,  # its own, and in its township
        (village, "village_head"): True,  # inside the village head's village
        (village, "viewer"): True,
        (mixed, "admin"): True,
        (mixed, "operator"): False,  # one target is a speaker in the other township
        (mixed, "village_head"): False,
        (one, "village_head"): True,  # a single speaker target, found in the village head's grid
        (one, "viewer"): True,
    }
    for (ident, role), seen in cases.items():
        answer = client.get(f"/api/v1/broadcasts/{ident}", headers=auth(tokens[role]))
        if not seen:
            assert answer.status_code == 404, (ident, role)
            assert answer.get_json()["error"]["code"] == "not_found"
            continue
        assert answer.status_code == 200, (ident, role)
        got, expected = answer.get_json(), _old_view(app, ident)
        assert list(got) == list(expected)
        for field in expected:
            assert got[field] == expected[field], (ident, role, field)
    statuses = {
        ident: client.get(f"/api/v1/broadcasts/{ident}", headers=auth(tokens["admin"])).get_json()["status"]
        for ident in (village, mixed)
    }
    assert statuses == {village: "playing", mixed: "done"}
    missing = client.get("/api/v1/broadcasts/999999", headers=auth(tokens["admin"], "en"))
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"


def _statements_of_a_miss(client: Any, token: str, url: str) -> list[str]:
    assert client.get("/api/v1/time").status_code == 200
    assert client.get("/api/v1/speakers?per_page=1", headers=auth(token)).status_code == 200  # token cached
    with statements(client.application) as seen:
        answer = client.get(url, headers=auth(token))  # a URL not read yet: a miss
    assert answer.status_code == 200, answer.get_json()
    return seen


@pytest.mark.parametrize(
    ("role", "url", "most"),
    [
        ("admin", "/api/v1/speakers?per_page=50", 2),  # the count and the page
        ("village_head", "/api/v1/speakers?per_page=50", 2),  # the grids found inside both statements
        ("operator", f"/api/v1/speakers?region={HUANGSHA_VILLAGE}", 4),  # + the chains of region and scope
        ("admin", f"/api/v1/speakers?region={DALU}&state=never_seen", 3),  # + the region's chain
    ],
)
def test_a_speakers_page_miss_runs_few_statements(
    client: Any, tokens: dict[str, str], role: str, url: str, most: int
) -> None:
    seen = _statements_of_a_miss(client, tokens[role], url)
    assert 1 <= len(seen) <= most, seen
    assert set(seen) <= {"SELECT", "WITH"}  # reads only: no user loaded by id, nothing written


def test_a_broadcast_miss_runs_few_statements(client: Any, app: Any, tokens: dict[str, str]) -> None:
    ident = _make_broadcast(client, tokens["admin"], [_speaker_in(app, HUANGSHA_VILLAGE)])
    admin = _statements_of_a_miss(client, tokens["admin"], f"/api/v1/broadcasts/{ident}")
    assert len(admin) == 3, admin  # the broadcast with its clip, its deliveries, its targets' names
    scoped = _statements_of_a_miss(client, tokens["village_head"], f"/api/v1/broadcasts/{ident}")
    assert len(scoped) == 5, scoped  # + the region parents and the speaker target's grid (not the ORM user)
    assert set(admin + scoped) == {"SELECT"}
