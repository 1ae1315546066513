"""What the API and console show of alerts: the list, one alert with its decisions and live coverage.

Scoped by region: admins and warning sources see every alert; anyone bound to a region (operators, village
heads, viewers) sees the alerts whose area touches their region, with the coverage of their region only.
An alert whose area resolved to nothing is shown to admins only (they name its targets).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import not_found
from broadcast.models import Alert, Delivery, Region, Speaker, User
from broadcast.services import alerts, regions

SOUNDED = ("playing", "finished")
FAILED = ("failed", "rejected")
MAX_LISTED = 200
SCAN = 2000  # newest alerts looked at when a listing is filtered by region


def summary(row: Alert) -> dict[str, Any]:
    """The fields of an alert a list shows."""
    return {
        "id": row.id,
        "identifier": row.identifier,
        "sender": row.sender,
        "sent": row.sent.isoformat(),
        "status": row.status,
        "msg_type": row.msg_type,
        "event": row.event,
        "event_code": row.event_code,
        "level": row.level,
        "headline": row.headline,
        "action": row.decision,
        "reason": row.reason,
        "state": row.state,
        "audience": row.audience,
        "broadcast_id": row.broadcast_id,
        "received_at": row.received_at.isoformat(),
    }


def visible(session: Session, row: Alert, user: User, tree: dict[str, Region] | None = None) -> bool:
    """True when the alert's area touches the user's region (always for admins and warning sources)."""
    scope = regions.user_scope(user)
    if scope is None:
        return True
    tree = regions.load_tree(session) if tree is None else tree
    codes = list(row.region_codes)
    if row.speaker_ids:
        codes += session.scalars(select(Speaker.grid_code).where(Speaker.id.in_(row.speaker_ids))).all()
    # inside the user's region, or a larger area that contains it (a county-wide warning reaches a township)
    return any(regions.within(tree, code, scope) or regions.within(tree, scope, code) for code in codes)


def get_visible(session: Session, alert_id: object, user: User) -> Alert:
    """An alert the user may see, or a not-found error (never a hint that it exists elsewhere)."""
    row = alerts.get(session, alert_id)
    if not visible(session, row, user):
        raise not_found("预警", "Alert", alert_id)
    return row


def listing(
    session: Session, *, user: User | None = None, state: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest alerts the user may see first, optionally only those in one state (e.g. held)."""
    limit = max(1, min(limit, MAX_LISTED))
    scoped = user is not None and regions.user_scope(user) is not None
    query = select(Alert).order_by(Alert.id.desc()).limit(SCAN if scoped else limit)
    if state:
        query = query.where(Alert.state == state)
    rows = list(session.scalars(query))
    if user is not None and scoped:
        tree = regions.load_tree(session)
        rows = [row for row in rows if visible(session, row, user, tree)]
    return [summary(row) for row in rows[:limit]]


def describe(session: Session, row: Alert, user: User | None = None) -> dict[str, Any]:
    """One alert: its fields, text, targets, every decision and, once sent, per-speaker deliveries and coverage."""
    body = summary(row)
    body.update(
        {
            "severity": row.severity,
            "urgency": row.urgency,
            "certainty": row.certainty,
            "language": row.language,
            "expires_at": row.expires_at,
            "references": row.references,
            "region_codes": row.region_codes,
            "speaker_ids": row.speaker_ids,
            "text": row.text,
            "replaced_by": row.replaced_by,
            "tone_broadcast_id": row.tone_broadcast_id,
            "source": row.source,
            "decisions": [
                {"at": d.at.isoformat(), "action": d.action, "reason": d.reason, "actor": d.actor, "detail": d.detail}
                for d in row.decisions
            ],
            "deliveries": [],
            "coverage": None,
            "tone_coverage": None,
        }
    )
    scope = regions.user_scope(user) if user is not None else None
    if row.broadcast_id is not None:
        body["deliveries"], body["coverage"] = coverage(session, row.broadcast_id, scope=scope)
    # the first sound: how many speakers the attention tone reached (an Update has none of its own)
    body["tone_coverage"] = coverage(session, row.tone_broadcast_id, scope=scope)[1] if row.tone_broadcast_id else None
    return body


def coverage(
    session: Session, broadcast_id: int, *, scope: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-speaker deliveries and the tally: sounded on x of y, offline, failed, per township (inside `scope`)."""
    rows = session.execute(
        select(Delivery.speaker_id, Delivery.state, Delivery.reason, Speaker.grid_code, Speaker.online)
        .join(Speaker, Speaker.id == Delivery.speaker_id)
        .where(Delivery.broadcast_id == broadcast_id)
        .order_by(Delivery.speaker_id)
    ).tuples()
    tree = regions.load_tree(session)
    total: dict[str, int] = {"speakers": 0, "sounded": 0, "offline": 0, "failed": 0, "preempted": 0}
    towns: dict[str, dict[str, Any]] = {}
    deliveries = []
    for speaker_id, state, reason, grid, online in rows:
        if not regions.within(tree, grid, scope):
            continue
        town = _township(tree, grid)
        deliveries.append(
            {"speaker_id": speaker_id, "state": state, "reason": reason, "online": online, "township": town}
        )
        tally = towns.setdefault(
            town or "-",
            {"name": tree[town].name if town in tree else "-", "speakers": 0, "sounded": 0, "offline": 0, "failed": 0},
        )
        for bucket in (total, tally):
            bucket["speakers"] += 1
            if state in SOUNDED:
                bucket["sounded"] += 1
            elif state == "missed" or not online:
                bucket["offline"] += 1
            elif state in FAILED:
                bucket["failed"] += 1
        if state == "preempted":
            total["preempted"] += 1
    return deliveries, {**total, "townships": towns}


def _township(tree: dict[str, Region], grid: str) -> str | None:
    for code in regions.ancestors(tree, grid):
        if tree[code].level == "township":
            return code
    return None
