"""REST API under /api/v1 (JSON, bearer tokens): thin views over the services."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from broadcast.errors import BroadcastError, not_found
from broadcast.models import PRIORITIES
from broadcast.services import broadcasts, clips, fleet, regions, speaker_admin
from broadcast.services.sending import send_broadcast
from broadcast.web.context import client_address, db, platform
from broadcast.web.openapi import ID_MAX, cached_document, declare
from broadcast.web.read_cache import cached_read
from broadcast.web.security import api_auth, csrf
from broadcast.web.views import clip_json, region_json
from media import Wrap

logger = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(api)

NULLABLE_TEXT = {"type": ["string", "null"], "maxLength": 200}
WRAP = {
    "type": ["object", "null"],
    "x-error-code": "invalid_wrap",
    "properties": {
        "chime_before": {"type": "boolean"},
        "repeat": {"type": "integer", "minimum": 1, "maximum": 10},
        "gap_s": {"type": "number", "minimum": 0, "maximum": 30},
        "chime_after": {"type": "boolean"},
        "attention_tone": {"type": "boolean"},
    },
}
CLIP_BODY = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "maxLength": 100000, "x-error-code": "text_required"},
        "voice": {**NULLABLE_TEXT, "maxLength": 100, "x-error-code": "invalid_voice"},
        "rate": {"type": "number", "minimum": 0.5, "maximum": 2.0, "x-error-code": "invalid_rate"},
        "title": {**NULLABLE_TEXT, "x-error-code": "title_too_long"},
        "wrap": WRAP,
    },
}
CLIP_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "contentEncoding": "binary"},
        "title": {"type": "string", "maxLength": 200},
        "wrap_chime_before": {"type": "boolean"},
        "wrap_repeat": {"type": "integer", "minimum": 1, "maximum": 10},
        "wrap_gap_s": {"type": "number", "minimum": 0, "maximum": 30},
        "wrap_chime_after": {"type": "boolean"},
        "wrap_attention_tone": {"type": "boolean"},
    },
}
CLIP = {
    "type": "object",
    "required": ["id", "sha256", "format", "duration_ms", "url"],
    "properties": {
        "id": {"type": "integer"},
        "sha256": {"type": "string"},
        "format": {"type": "string"},
        "duration_ms": {"type": "integer"},
        "loudness_lufs": {"type": ["number", "null"]},
        "true_peak_dbtp": {"type": ["number", "null"]},
        "source": {"type": "string"},
        "title": {"type": ["string", "null"]},
        "text": {"type": ["string", "null"]},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "url": {"type": "string"},
    },
}
BROADCAST_BODY = {
    "type": "object",
    "required": ["clip_id", "targets"],
    "properties": {
        "clip_id": {
            "type": ["integer", "string"],
            "minimum": 1,
            "maximum": ID_MAX,
            "maxLength": 20,
            "x-error-code": "not_found",
        },
        "targets": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10000,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
            "x-error-code": "targets_required",
        },
        "priority": {"enum": [*PRIORITIES, None], "x-error-code": "invalid_priority"},
        "volume": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "x-error-code": "invalid_volume"},
        "repeat": {"type": ["integer", "null"], "minimum": 1, "maximum": 100, "x-error-code": "invalid_repeat"},
        "start_at": {
            "type": ["string", "number", "null"],
            "pattern": "^2[0-9]{3}-",
            "maxLength": 40,
            "minimum": 0,
            "maximum": 4102444800,
            "x-error-code": "invalid_start",
        },
    },
}
BROADCAST_CREATED = {
    "type": "object",
    "required": ["id", "status", "start_at"],
    "properties": {"id": {"type": "integer"}, "status": {"type": "string"}, "start_at": {"type": "number"}},
}
BROADCAST = {
    "type": "object",
    "required": ["id", "status", "priority", "targets", "start_at", "counts", "deliveries"],
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": ["scheduled", "sending", "playing", "done", "pending_approval", "rejected"]},
        "priority": {"enum": list(PRIORITIES)},
        "targets": {"type": "array", "items": {"type": "object", "required": ["id", "name"]}},
        "start_at": {"type": "number"},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "deliveries": {"type": "array", "items": {"type": "object", "required": ["speaker_id", "state"]}},
    },
}
ITEMS = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array"}}}
PAGE_QUERY = {
    "region": {"type": "string", "maxLength": 64},
    "state": {"type": "string", "maxLength": 32},
    "page": {"type": "integer", "minimum": 1, "maximum": 100000},
    "per_page": {"type": "integer", "minimum": 1, "maximum": 1000},
}


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    return data


def _created(payload: dict[str, Any]) -> tuple[Response, int]:
    return jsonify(payload), 201


@api.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API (no token needed)."""
    return jsonify(cached_document())


@api.get("/time")
@declare(public=True, response={"type": "object", "required": ["now"], "properties": {"now": {"type": "number"}}})
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
@declare(body=CLIP_BODY, form=CLIP_FORM, response=CLIP, status=201)
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
        data = _json_body()  # checked against CLIP_BODY already
        clip = clips.from_text(
            session,
            p.media_store,
            p.media,
            data.get("text"),
            user=g.user,
            voice=data.get("voice"),
            rate=float(data.get("rate", 1.0)),
            wrap=parse_wrap(data.get("wrap")),
            title=data.get("title"),
        )
    session.commit()
    return _created(clip_json(clip))


@api.get("/clips/<clip_id>")
@api_auth
@declare(response=CLIP)
def get_clip(clip_id: str) -> Response:
    """One clip's measurements and URL."""
    return jsonify(clip_json(clips.get(db(), clip_id, g.user)))


@api.post("/broadcasts")
@api_auth
@declare(body=BROADCAST_BODY, response=BROADCAST_CREATED, status=201)
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
@cached_read
@declare(response=BROADCAST)
def get_broadcast(broadcast_id: str) -> Response:
    """A broadcast's status and every speaker's delivery."""
    if not (broadcast_id.isascii() and broadcast_id.isdigit() and 0 < int(broadcast_id[:12]) <= ID_MAX):
        raise not_found("播发任务", "Broadcast", broadcast_id[:40])  # no database integer holds it: unknown
    return jsonify(broadcasts.view(db(), broadcast_id, g.user))  # plain rows: nothing to flush, a read stays a read


@api.get("/regions")
@api_auth
@declare(response=ITEMS)
def list_regions() -> Response:
    """Regions the user may see."""
    return jsonify({"items": [region_json(r) for r in regions.visible_regions(db(), g.user)]})


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def speaker_row_json(row: Any) -> dict[str, Any]:
    """What admin_api.speaker_admin_json shows of a speaker, from a `speaker_admin.list_page` row in one dict."""
    return {
        "id": row.id,
        "name": row.name,
        "region_code": row.grid_code,
        "online": row.online,
        "last_seen": _iso(row.last_seen),
        "volume": row.volume,
        "agent_version": row.agent_version,
        "playing": row.playing_broadcast_id,
        "clock_offset_ms": row.clock_offset_ms,
        "cache_bytes": row.cache_bytes,
        "rejected_count": row.rejected_count,
        "schedule_synced_at": _iso(row.schedule_synced_at),
        "latitude": row.latitude,
        "longitude": row.longitude,
        "grid_code": row.grid_code,
        "address": row.address,
        "notes": row.notes,
        "sim_number": row.sim_number,
        "test_speaker": row.test_speaker,
        "enabled": row.enabled,
        "provisioned": row.broker_password_hash is not None,
        "retired_at": _iso(row.retired_at),
        "state": speaker_admin.state_of(row),
    }


@api.get("/speakers")
@cached_read
@declare(query=PAGE_QUERY, response=ITEMS)
def list_speakers() -> Response:
    """Speakers in the user's region with their state: paginated, filtered by ?region= and ?state=."""
    from broadcast.web.admin_api import int_arg

    found = speaker_admin.list_page(
        db(),
        g.user,
        region=request.args.get("region") or None,
        state=request.args.get("state") or None,
        page=int_arg("page", 1),
        per_page=int_arg("per_page", 500),
    )
    items = [speaker_row_json(s) for s in found.items]
    return jsonify({"items": items, "total": found.total, "page": found.page, "per_page": found.per_page})


@api.get("/alarms")
@api_auth
@declare(response=ITEMS)
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
