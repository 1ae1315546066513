"""REST API of approvals (先审后播): the queue, approve and reject (thin views over services/approvals.py)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from broadcast.services import approvals
from broadcast.web.context import client_address, db, platform
from broadcast.web.openapi import declare
from broadcast.web.security import api_auth, csrf

logger = logging.getLogger(__name__)
approvals_api = Blueprint("approvals_api", __name__, url_prefix="/api/v1")
csrf.exempt(approvals_api)

COMMENT = {"type": ["string", "null"], "maxLength": approvals.MAX_COMMENT, "x-error-code": "comment_too_long"}
APPROVE_BODY = {"type": "object", "properties": {"comment": COMMENT}}
# The comment is required; the service says so in words ("驳回时请填写意见"), for a blank one too.
REJECT_BODY = {"type": "object", "properties": {"comment": COMMENT}}
APPROVAL = {
    "type": "object",
    "required": ["id", "kind", "object_id", "state", "targets", "submitted_by", "submitted_at"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": ["broadcast", "schedule"]},
        "object_id": {"type": "integer"},
        "state": {"enum": ["pending", "approved", "rejected", "withdrawn"]},
        "summary": {"type": "string"},
        "targets": {"type": "array", "items": {"type": "string"}},
        "submitted_by": {"type": ["string", "null"]},
        "submitted_at": {"type": "string"},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": {"type": ["string", "null"]},
        "comment": {"type": ["string", "null"]},
        "may_decide": {"type": "boolean"},
    },
}
APPROVALS = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": APPROVAL}}}
STATE_QUERY = {"state": {"enum": ["pending", "decided", "all"]}}


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


@approvals_api.get("/approvals")
@api_auth
@declare(query=STATE_QUERY, response=APPROVALS)
def list_approvals() -> Response:
    """What waits for your approval (先审后播) and what you submitted (?state=decided, ?state=all for history)."""
    session = db()
    items = approvals.listing(session, g.user, state=request.args.get("state") or "pending")
    return jsonify({"items": [approvals.describe(session, a, g.user) for a in items]})


@approvals_api.post("/approvals/<approval_id>/approve")
@api_auth
@declare(body=APPROVE_BODY, response=APPROVAL)
def approve(approval_id: str) -> Response:
    """Approve: the broadcast goes out (a fresh start if its time has passed) or the schedule resumes; {"comment"?}."""
    session = db()
    item = approvals.approve(session, platform(), g.user, approval_id, _body().get("comment"), address=client_address())
    return jsonify(approvals.describe(session, item, g.user))


@approvals_api.post("/approvals/<approval_id>/reject")
@api_auth
@declare(body=REJECT_BODY, response=APPROVAL)
def reject(approval_id: str) -> Response:
    """Reject with {"comment"}: the broadcast ends `rejected`; the schedule stays paused for its author to edit."""
    session = db()
    item = approvals.reject(session, g.user, approval_id, _body().get("comment"), address=client_address())
    return jsonify(approvals.describe(session, item, g.user))
