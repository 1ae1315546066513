"""REST API for schedules, playlists and the clip library, and Stop for any broadcast (thin views)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from broadcast.errors import BroadcastError
from broadcast.services import library, schedule_changes, schedules
from broadcast.services.schedules import Limits
from broadcast.web.context import client_address, db, lang, platform
from broadcast.web.security import api_auth, csrf

logger = logging.getLogger(__name__)
schedules_api = Blueprint("schedules_api", __name__, url_prefix="/api/v1")
csrf.exempt(schedules_api)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    return data


def schedule_limits() -> Limits:
    """The deployment's schedule limits (plays per day, misfire grace) from its settings."""
    settings = platform().settings
    return Limits(max_per_day=settings["SCHEDULE_MAX_PER_DAY"], grace_s=settings["SCHEDULE_GRACE_S"])


def _commit_and_publish(stops: list[Any]) -> None:
    db().commit()
    schedule_changes.publish(platform(), stops)


@schedules_api.post("/schedules")
@api_auth
def create_schedule() -> tuple[Response, int]:
    """Save a schedule; answer its summary, next occurrences and overlaps with other schedules."""
    session = db()
    item, found = schedules.create(
        session, g.user, platform().rules, schedule_limits(), _body(), address=client_address()
    )
    session.commit()
    body = schedules.describe(session, item, with_history=False, language=lang())
    return jsonify({**body, "conflicts": found}), 201


@schedules_api.post("/schedules/preview")
@api_auth
def preview_schedule() -> Response:
    """What saving would show (summary, next occurrences, overlaps); nothing is saved."""
    return jsonify(schedules.preview(db(), g.user, platform().rules, schedule_limits(), _body(), language=lang()))


@schedules_api.get("/schedules")
@api_auth
def list_schedules() -> Response:
    """Schedules the user may see (add ?deleted=1 for deleted ones too)."""
    session = db()
    items = schedules.list_for(session, g.user, include_deleted=request.args.get("deleted") == "1")
    return jsonify({"items": [schedules.describe(session, s, with_history=False, language=lang()) for s in items]})


@schedules_api.get("/schedules/<schedule_id>")
@api_auth
def get_schedule(schedule_id: str) -> Response:
    """One schedule with its next occurrences and per-occurrence history."""
    session = db()
    return jsonify(schedules.describe(session, schedules.get(session, schedule_id, g.user), language=lang()))


@schedules_api.patch("/schedules/<schedule_id>")
@api_auth
def patch_schedule(schedule_id: str) -> Response:
    """Pause/resume ({"paused": true|false}) or edit fields; planned occurrences are cancelled and remade."""
    session = db()
    item, stops, found = schedule_changes.update(
        session, g.user, platform().rules, schedule_limits(), schedule_id, _body(), address=client_address()
    )
    _commit_and_publish(stops)
    return jsonify({**schedules.describe(session, item, with_history=False, language=lang()), "conflicts": found})


@schedules_api.delete("/schedules/<schedule_id>")
@api_auth
def delete_schedule(schedule_id: str) -> Response:
    """Stop a schedule for good; its planned occurrences are cancelled on the speakers at once."""
    session = db()
    item, stops = schedule_changes.delete(session, g.user, schedule_id, address=client_address())
    _commit_and_publish(stops)
    return jsonify({"id": item.id, "state": item.state})


@schedules_api.post("/schedules/<schedule_id>/cancel")
@api_auth
def cancel_occurrence(schedule_id: str) -> Response:
    """Cancel one occurrence: {"at": ISO 8601 time as listed in next_occurrences}."""
    session = db()
    item, stops = schedule_changes.cancel_occurrence(
        session, g.user, schedule_id, _body().get("at"), address=client_address()
    )
    _commit_and_publish(stops)
    return jsonify(schedules.describe(session, item, with_history=False, language=lang()))


@schedules_api.post("/broadcasts/<broadcast_id>/stop")
@api_auth
def stop_broadcast(broadcast_id: str) -> Response:
    """Stop a broadcast now, playing or queued (the protocol's Stop), within the user's region."""
    session = db()
    item, stops = schedule_changes.stop_broadcast(session, g.user, broadcast_id, address=client_address())
    _commit_and_publish(stops)
    return jsonify({"id": item.id, "status": item.status, "stopped": True})


@schedules_api.post("/playlists")
@api_auth
def create_playlist() -> tuple[Response, int]:
    """An ordered series of clips: {"title", "clip_ids": [...], "mode": "advance"|"rotate"}."""
    session = db()
    data = _body()
    item = library.create_playlist(
        session, g.user, data.get("title"), data.get("clip_ids"), data.get("mode"), address=client_address()
    )
    session.commit()
    return jsonify(library.playlist_json(item)), 201


@schedules_api.get("/playlists")
@api_auth
def list_playlists() -> Response:
    """Playlists the user may use."""
    return jsonify({"items": [library.playlist_json(p) for p in library.playlists_for(db(), g.user)]})


@schedules_api.get("/clips")
@api_auth
def list_clips() -> Response:
    """The clip library the user may use (?tag=普法, ?q=words in the title, ?retired=1 for retired ones)."""
    items = library.clips_for(
        db(),
        g.user,
        tag=request.args.get("tag"),
        query=request.args.get("q"),
        retired=request.args.get("retired") == "1",
    )
    return jsonify({"items": [library.clip_entry(c) for c in items]})


@schedules_api.patch("/clips/<clip_id>")
@api_auth
def patch_clip(clip_id: str) -> Response:
    """Rename, tag or retire a clip: {"title"?, "tags"?, "retired"?}."""
    session = db()
    clip = library.edit_clip(session, g.user, clip_id, _body(), address=client_address())
    session.commit()
    return jsonify(library.clip_entry(clip))
