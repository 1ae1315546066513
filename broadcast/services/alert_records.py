"""Records of the warning service: the API's answer, the system account, the handling table, decisions, refusals."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.alerts import PolicyTable
from broadcast.errors import BroadcastError
from broadcast.models import Alert, AlertDecision, User
from broadcast.services import audit

if TYPE_CHECKING:
    from broadcast.platform import Platform

SYSTEM_USER = "warning-system"
NO_PASSWORD = "!"  # noqa: S105 - a marker that matches no password


@dataclass(frozen=True)
class Outcome:
    """What the API answers: the alert, the action taken, why, and the broadcast started (if any)."""

    alert_id: int
    action: str
    reason: str
    broadcast_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The contract's 202 body."""
        body: dict[str, Any] = {"alert_id": self.alert_id, "action": self.action, "reason": self.reason}
        if self.broadcast_id is not None:
            body["broadcast_id"] = self.broadcast_id
        return body


def system_user(session: Session) -> User:
    """The account alerts broadcast as: a warning_source that cannot log in or hold tokens (inactive)."""
    user = session.scalar(select(User).where(User.username == SYSTEM_USER))
    if user is None:
        # "!" is no hash werkzeug accepts, so no password ever matches; inactive refuses tokens and logins too.
        user = User(username=SYSTEM_USER, password_hash=NO_PASSWORD, role="warning_source", active=False)
        session.add(user)
        session.flush()
        audit.record(session, "system", "user.create", object_type="user", object_id=user.id, role=user.role)
    return user


def policy_table(platform: Platform) -> PolicyTable:
    """The handling table from the ALERT_POLICY setting."""
    return PolicyTable.from_json(str(platform.settings.get("ALERT_POLICY", "")))


def reject(
    session: Session, data: bytes, error: BroadcastError, *, actor: str, source: str, address: str | None
) -> None:
    """Keep only an audit entry for a refused message (its hash and size, never its content)."""
    session.rollback()
    audit.record(
        session,
        actor[:64],
        "alert.rejected",
        object_type="alert",
        address=address,
        code=error.code,
        reason=error.en[:300],
        source=source,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    session.commit()


def note(session: Session, row: Alert, action: str, reason: str, actor: str, **detail: Any) -> None:
    """Record one decision on an alert, in its own table and in the audit log."""
    session.add(
        AlertDecision(alert_id=row.id, action=action, reason=reason[:200], actor=actor[:64], detail=detail or None)
    )
    audit.record(
        session,
        actor[:64],
        f"alert.{action}",
        object_type="alert",
        object_id=row.id,
        regions=row.region_codes or None,
        reason=reason,
        identifier=row.identifier[:120],
        **detail,
    )
