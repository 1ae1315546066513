"""Writing the append-only, hash-chained audit trail (the chain itself: services/audit_chain.py)."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from broadcast.models import AuditEvent
from broadcast.services.audit_chain import ORDER

_order = itertools.count(1)


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    object_type: str | None = None,
    object_id: object = None,
    regions: list[str] | None = None,
    address: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Add one audit event to the session (it commits with the change it describes)."""
    event = AuditEvent(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        region_codes=regions,
        address=address,
        detail=detail or None,
    )
    setattr(event, ORDER, next(_order))
    session.add(event)
    return event
