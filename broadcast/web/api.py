"""REST API under /api/v1 (JSON, bearer tokens): thin views over the services."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select

from broadcast.errors import BroadcastError
from broadcast.models import Speaker
from broadcast.services import broadcasts, clips, fleet, regions
from broadcast.services.sending import send_broadcast
from broadcast.web.context import client_address, db, platform
from broadcast.web.security import api_auth, csrf
from broadcast.web.views import clip_json, region_json, speaker_json
from media import Wrap

logger = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(api)


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    return data


def _created(payload: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(payload), 201


@api.get("/time")
def server_time() -> Response:
    """The server clock (unix seconds), for a speaker's clock-offset estimate; no token needed."""
    return jsonify({"now": time.time()})


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "on", "yes")


def parse_wrap(data: Any) -> Wrap | None:
    """Composition options from JSON {"wrap": {...}} or form fields wrap_*; None when absent."""
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise BroadcastError("invalid_wrap", "片头片尾设置格式无效。", "`wrap` must be an object.")
    try:
        wrap = Wrap(
            chime_before=_flag(data.get("chime_before", False)),
            repeat=int(data.get("repeat", 1)),
            gap_s=float(data.get("gap_s", 2.0)),
            chime_after=_flag(data.get("chime_after", False)),
            attention_tone=_flag(data.get("attention_tone", False)),
        )
    except (TypeError, ValueError):
        raise BroadcastError(
            "invalid_wrap", "片头片尾设置无效：重复 1-10 次，间隔 0-30 秒。", "Invalid wrap: repeat 1-10, gap 0-30 s."
        ) from None
    return None if wrap.is_plain else wrap


def _form_wrap() -> Wrap | None:
    fields = {k.removeprefix("wrap_"): v for k, v in request.form.items() if k.startswith("wrap_")}
    return parse_wrap(fields or None)


@api.post("/clips")
@api_auth
def create_clip() -> tuple[Response, int]:
    """Make a clip from JSON {"text", "voice"?, "rate"?} or a multipart `file` upload."""
    session = db()
    p = platform()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise BroadcastError("file_required", "请选择要上传的音频文件。", "Attach the audio as `file`.")
        clip = clips.from_upload(
            session,
            p.media_store,
            p.media,
            upload.stream,
            user=g.user,
            title=request.form.get("title") or None,
            wrap=_form_wrap(),
        )
    else:
        data = _json_body()
        rate = data.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.5 <= rate <= 2.0:
            raise BroadcastError("invalid_rate", "语速必须在 0.5 到 2.0 之间。", "rate must be between 0.5 and 2.0.")
        voice = data.get("voice")
        if voice is not None and not isinstance(voice, str):
            raise BroadcastError("invalid_voice", "发音人无效。", "Invalid voice.")
        clip = clips.from_text(
            session,
            p.media_store,
            p.media,
            data.get("text"),
            user=g.user,
            voice=voice,
            rate=float(rate),
            wrap=parse_wrap(data.get("wrap")),
            title=data.get("title") if isinstance(data.get("title"), str) else None,
        )
    session.commit()
    return _created(clip_json(clip))


@api.get("/clips/<clip_id>")
@api_auth
def get_clip(clip_id: str) -> Response:
    """One clip's measurements and URL."""
    return jsonify(clip_json(clips.get(db(), clip_id, g.user)))


@api.post("/broadcasts")
@api_auth
def create_broadcast() -> tuple[Response, int]:
    """Broadcast a clip to regions and/or speakers, now or at `start_at`."""
    data = _json_body()
    session = db()
    item = broadcasts.create(
        session,
        g.user,
        platform().rules,
        clip_id=data.get("clip_id"),
        targets=data.get("targets"),
        priority=data.get("priority"),
        volume=data.get("volume"),
        repeat=data.get("repeat"),
        start_at=data.get("start_at"),
        source="api",
        address=client_address(),
    )
    send_broadcast(session, platform(), item)
    return _created({"id": item.id, "status": item.status, "start_at": item.start_at})


@api.get("/broadcasts/<broadcast_id>")
@api_auth
def get_broadcast(broadcast_id: str) -> Response:
    """A broadcast's status and every speaker's delivery."""
    return jsonify(broadcasts.view(db(), broadcast_id, g.user))


@api.get("/regions")
@api_auth
def list_regions() -> Response:
    """Regions the user may see."""
    return jsonify({"items": [region_json(r) for r in regions.visible_regions(db(), g.user)]})


@api.get("/speakers")
@api_auth
def list_speakers() -> Response:
    """Speakers in the user's region with their online state."""
    session = db()
    tree = regions.load_tree(session)
    scope = regions.user_scope(g.user)
    items = [
        speaker_json(s)
        for s in session.scalars(select(Speaker).order_by(Speaker.id))
        if regions.within(tree, s.grid_code, scope)
    ]
    return jsonify({"items": items})


@api.get("/alarms")
@api_auth
def list_alarms() -> Response:
    """Speakers that need a look: offline, never seen, failing their last plays, refusing commands."""
    items = [
        {
            "speaker_id": a.speaker_id,
            "name": a.name,
            "region_path": a.region_path,
            "kind": a.kind,
            "since": a.since.isoformat() if a.since else None,
            "detail": a.detail,
        }
        for a in fleet.alarms(db(), g.user)
    ]
    return jsonify({"items": items})
