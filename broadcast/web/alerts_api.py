"""Warning API under /api/v1: CAP ingest, alert views, confirm/cancel, the emergency button, sensor triggers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from broadcast.alert_feeds import feed_alarms
from broadcast.alerts import MAX_BYTES, AlertError
from broadcast.alerts.triggers import MAX_READING_BYTES, signature_ok
from broadcast.errors import BroadcastError, forbidden
from broadcast.models import User
from broadcast.services import accounts, alert_inputs, alert_records, alert_view, alerts
from broadcast.web.context import client_address, db, platform
from broadcast.web.openapi import declare
from broadcast.web.security import UNAUTHORIZED, api_auth, csrf

logger = logging.getLogger(__name__)
alerts_api = Blueprint("alerts_api", __name__, url_prefix="/api/v1")
csrf.exempt(alerts_api)

CAP_TYPES = ("application/cap+xml", "application/xml", "text/xml")
OUTCOME = {
    "type": "object",
    "required": ["alert_id", "action", "reason"],
    "properties": {
        "alert_id": {"type": "integer"},
        "action": {"enum": ["broadcast", "held", "ignored", "duplicate", "cancelled", "updated"]},
        "reason": {"type": "string"},
        "broadcast_id": {"type": "integer"},
    },
}
MANUAL_BODY = {
    "type": "object",
    "required": ["text", "targets"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 300, "x-error-code": "alert.text_required"},
        "targets": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5000,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
            "x-error-code": "targets_required",
        },
        "confirm": {"type": "string", "maxLength": 20},
    },
}
SOURCE_ROLES = ("warning_source", "admin")


def _token_user() -> User | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    user = accounts.user_for_token(db(), header[7:].strip())
    if user is None:
        raise UNAUTHORIZED
    db().commit()
    return user


def _body(limit: int) -> bytes:
    """The raw body, cut one byte past `limit`; a body declared larger than that is never read whole."""
    if request.content_length is not None and request.content_length > limit:
        return request.stream.read(limit + 1)
    # An earlier check may have read (and cached) a JSON body already; get_data returns it either way.
    data = request.get_data(cache=True)
    return data[: limit + 1]


def _refuse_oversize(body: bytes, actor: str, source: str) -> None:
    if len(body) > MAX_BYTES:
        error = AlertError(
            "too_large",
            f"预警消息过大（上限 {MAX_BYTES} 字节）。",
            f"CAP message too large (limit {MAX_BYTES} bytes).",
            limit=MAX_BYTES,
        )
        alert_records.reject(db(), body, error, actor=actor, source=source, address=client_address())
        raise error


@alerts_api.post("/alerts")
@declare(response=OUTCOME, status=202)
def post_alert() -> tuple[Response, int]:
    """Take a CAP 1.2 message (token of a warning_source, or X-Signature: sha256=<HMAC of the body>)."""
    if request.mimetype not in CAP_TYPES:
        raise BroadcastError(
            "alert.content_type",
            "请以 application/cap+xml 或 application/xml 提交 CAP 消息。",
            "Post CAP as application/cap+xml or application/xml.",
            kind="unsupported",
        )
    user = _token_user()
    body = _body(MAX_BYTES)
    if user is not None:
        if user.role not in SOURCE_ROLES:
            raise forbidden("只有预警信息源账号可以提交预警。", "Only a warning_source account may post alerts.")
        actor, source = user.username, f"api:{user.username}"
    else:
        secret = str(platform().settings.get("ALERT_HMAC_SECRET", ""))
        if not signature_ok(secret, body, request.headers.get("X-Signature")):
            raise UNAUTHORIZED
        actor, source = "hmac", "hmac"
    _refuse_oversize(body, actor, source)
    outcome = alerts.ingest(db(), platform(), body, actor=actor, source=source, address=client_address())
    return jsonify(outcome.as_json()), 202


@alerts_api.get("/alerts")
@api_auth
def list_alerts() -> Response:
    """The newest alerts (?state=held for those waiting for an operator)."""
    state = request.args.get("state") or None
    return jsonify({"items": alert_view.listing(db(), user=g.user, state=state)})


@alerts_api.get("/alerts/feeds")
@api_auth
def list_feeds() -> Response:
    """Every configured warning feed with its health; `alarm` is set when it stalls or answers garbage."""
    return jsonify({"items": feed_alarms(platform())})


@alerts_api.get("/alerts/<alert_id>")
@api_auth
def get_alert(alert_id: str) -> Response:
    """One alert with its decisions, per-speaker deliveries and coverage per township (scoped by region)."""
    return jsonify(alert_view.describe(db(), alert_view.get_visible(db(), alert_id, g.user), g.user))


def _json() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    return data


@alerts_api.post("/alerts/<alert_id>/confirm")
@api_auth
@declare(response=OUTCOME, status=202)
def confirm_alert(alert_id: str) -> tuple[Response, int]:
    """Release a held alert; {"targets": [...]} names the area when it could not be resolved."""
    outcome = alert_inputs.confirm(db(), platform(), alert_id, g.user, targets=_json().get("targets"))
    return jsonify(outcome.as_json()), 202


@alerts_api.post("/alerts/<alert_id>/cancel")
@api_auth
@declare(response=OUTCOME, status=202)
def cancel_alert(alert_id: str) -> tuple[Response, int]:
    """Stop an open alert on every speaker."""
    outcome = alert_inputs.cancel(db(), platform(), alert_id, g.user)
    return jsonify(outcome.as_json()), 202


@alerts_api.post("/alerts/manual")
@api_auth
@declare(body=MANUAL_BODY, response=OUTCOME, status=202)
def manual_alert() -> tuple[Response, int]:
    """The emergency button: {"text", "targets", "confirm": "确认播发"}."""
    data = _json()
    outcome = alert_inputs.manual(
        db(),
        platform(),
        g.user,
        text=data.get("text"),
        targets=data.get("targets"),
        confirm_words=data.get("confirm"),
    )
    return jsonify(outcome.as_json()), 202


@alerts_api.post("/triggers/<source>")
def post_trigger(source: str) -> tuple[Response, int]:
    """A sensor reading {"value", "at"} signed with X-Signature: sha256=<HMAC-SHA256 of the body>."""
    body = _body(MAX_READING_BYTES)
    result = alert_inputs.trigger(
        db(), platform(), source, body, request.headers.get("X-Signature"), address=client_address()
    )
    payload = result.as_json() if isinstance(result, alert_records.Outcome) else result
    return jsonify(payload), 202
