"""Approvals (先审后播): who must wait, who may decide, and the decision that releases or ends the wait.

A broadcast of a role named in `APPROVAL_REQUIRED` is recorded with its deliveries `held` and status
`pending_approval`; no command exists until an approver says yes. A schedule of such a role is saved paused.
Emergency broadcasts never wait. The approver is an admin, or an operator whose region contains every target;
never the author. Every submission and decision is audited.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import Approval, Broadcast, Delivery, Region, Schedule, Speaker, User
from broadcast.services import audit, regions
from broadcast.services.sending import send_broadcast

if TYPE_CHECKING:
    from broadcast.platform import Platform
    from broadcast.services.broadcasts import Rules

logger = logging.getLogger(__name__)
PENDING_STATUS = "pending_approval"  # a broadcast waiting for its approver
REJECTED_STATUS = "rejected"
APPROVER_ROLES = ("admin", "operator")
MAX_COMMENT = 500


@dataclass(frozen=True)
class Rule:
    """One entry of APPROVAL_REQUIRED: a role, optionally only inside one region."""

    role: str
    region: str | None = None


def parse_policy(text: str) -> list[Rule]:
    """`village_head, operator@421224104000` → rules; an empty text means nobody waits."""
    found: list[Rule] = []
    for part in (text or "").replace("，", ",").split(","):
        role, _, code = part.strip().partition("@")
        if role.strip():
            found.append(Rule(role.strip(), code.strip() or None))
    return found


def needs_approval(session: Session, user: User, policy: str, priority: object = None) -> bool:
    """True when this user's broadcast or schedule must wait for an approver (emergencies never wait)."""
    if priority == "emergency" or user.role == "admin":
        return False
    rules = [r for r in parse_policy(policy) if r.role == user.role]
    if not rules:
        return False
    if any(r.region is None for r in rules):
        return True
    if user.region_code is None:
        return False
    tree = regions.load_tree(session)
    return any(regions.within(tree, user.region_code, r.region) for r in rules)


def submit(
    session: Session,
    user: User,
    kind: str,
    object_id: int,
    targets: list[str],
    summary: str,
    *,
    address: str | None = None,
) -> Approval:
    """Queue a broadcast or schedule for approval and audit the submission."""
    item = Approval(
        kind=kind, object_id=object_id, region_codes=list(targets), summary=summary[:200], submitted_by=user.id
    )
    session.add(item)
    session.flush()
    audit.record(
        session,
        user.username,
        "approval.submit",
        object_type=kind,
        object_id=object_id,
        regions=list(targets),
        address=address,
        approval_id=item.id,
    )
    logger.info("%s %s of %s waits for approval %s", kind, object_id, user.username, item.id)
    return item


def hold_schedule(session: Session, user: User, rules: Rules, item: Schedule, *, address: str | None = None) -> bool:
    """After a schedule is saved or changed: pause it until approved when its author must wait; True if held.

    While an approval of it is pending, nobody can make it active except by approving it.
    """
    if item.state != "active":
        return False
    pending = pending_for(session, "schedule", item.id)
    if pending is None and not needs_approval(session, user, rules.approval_required, item.priority):
        return False
    if pending is not None and user.id != pending.submitted_by:
        raise BroadcastError(
            "awaiting_approval",
            "该定时计划正在等待审批，请在“待审批”页面批准或驳回。",
            "That schedule is waiting for approval: approve or reject it on the approvals page.",
            kind="conflict",
        )
    item.state = "paused"
    if pending is None:
        submit(session, user, "schedule", item.id, item.targets, item.title or f"定时计划 {item.id}", address=address)
    return True


def pending_for(session: Session, kind: str, object_id: int) -> Approval | None:
    """The pending approval of one broadcast or schedule, if any."""
    query = select(Approval).where(Approval.kind == kind, Approval.object_id == object_id, Approval.state == "pending")
    return session.scalars(query).first()


def _grids(session: Session, approval: Approval, tree: dict[str, Region]) -> list[str | None]:
    codes: list[str | None] = []
    for target in approval.region_codes:
        codes.append(target if target in tree else getattr(session.get(Speaker, target), "grid_code", None))
    return codes


def may_decide(session: Session, user: User, approval: Approval, tree: dict[str, Region] | None = None) -> bool:
    """An admin, or an operator whose region holds every target; never the author, never a role that waits."""
    if user.role not in APPROVER_ROLES or user.id == approval.submitted_by:
        return False
    if user.role == "admin":
        return True
    if user.region_code is None:
        return False
    tree = regions.load_tree(session) if tree is None else tree
    codes = _grids(session, approval, tree)
    return bool(codes) and all(c is not None and regions.within(tree, c, user.region_code) for c in codes)


def _still_waiting(session: Session, approval: Approval) -> bool:
    if approval.kind == "broadcast":
        item = session.get(Broadcast, approval.object_id)
        return item is not None and item.status == PENDING_STATUS
    schedule = session.get(Schedule, approval.object_id)
    return schedule is not None and schedule.state == "paused"


def listing(session: Session, user: User, state: str = "pending", limit: int = 200) -> list[Approval]:
    """Approvals the user may decide plus the user's own submissions (newest first); `state`: pending|decided|all."""
    query = select(Approval).order_by(Approval.submitted_at.desc(), Approval.id.desc())
    if state == "pending":
        query = query.where(Approval.state == "pending")
    elif state == "decided":
        query = query.where(Approval.state != "pending")
    elif state != "all":
        raise BroadcastError(
            "invalid_argument", "state 只能是 pending、decided 或 all。", "state must be pending, decided or all."
        )
    if user.role not in APPROVER_ROLES:
        query = query.where(Approval.submitted_by == user.id)
    tree = regions.load_tree(session)
    found: list[Approval] = []
    for item in session.scalars(query.limit(limit * 4)):
        if item.submitted_by != user.id and not may_decide(session, user, item, tree):
            continue
        if item.state == "pending" and not _still_waiting(session, item):
            continue
        found.append(item)
        if len(found) >= limit:
            break
    return found


def waiting_count(session: Session, user: User) -> int:
    """How many pending approvals this user may decide (the console's 待审批 badge)."""
    if user.role not in APPROVER_ROLES:
        return 0
    return sum(1 for a in listing(session, user) if a.submitted_by != user.id)


def get(session: Session, user: User, approval_id: object) -> Approval:
    """An approval the user may see (as its author or its approver), or not-found."""
    try:
        ident = int(str(approval_id))
    except ValueError:
        raise not_found("审批", "Approval", approval_id) from None
    item = session.get(Approval, ident)
    if item is None or (item.submitted_by != user.id and not may_decide(session, user, item)):
        raise not_found("审批", "Approval", approval_id)
    return item


def _decidable(session: Session, user: User, approval_id: object) -> Approval:
    item = get(session, user, approval_id)
    if not may_decide(session, user, item):
        raise forbidden("只有上级管理员或所在区域的操作员可以审批。", "Only an operator above the author may decide.")
    if item.state != "pending":
        raise BroadcastError(
            "already_decided", "该申请已经处理过了。", "That request was already decided.", kind="conflict"
        )
    if not _still_waiting(session, item):
        item.state = "withdrawn"
        session.commit()
        raise BroadcastError(
            "no_longer_waiting",
            "该播发或计划已被停止或删除，无需审批。",
            "That broadcast or schedule was stopped or deleted: nothing to approve.",
            kind="conflict",
        )
    return item


def _comment(value: object, required: bool) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        text = ""
    if required and not text:
        raise BroadcastError("comment_required", "驳回时请填写意见。", "Give a comment when rejecting.")
    if len(text) > MAX_COMMENT:
        raise BroadcastError(
            "comment_too_long", f"意见不能超过 {MAX_COMMENT} 字。", f"A comment is at most {MAX_COMMENT} characters."
        )
    return text or None


def _decide(session: Session, item: Approval, user: User, state: str, comment: str | None) -> None:
    """Record the decision only if nobody decided first (two approvers clicking at once: one wins)."""
    values = {"state": state, "decided_by": user.id, "decided_at": datetime.now(UTC), "comment": comment}
    result = session.execute(
        update(Approval)
        .where(Approval.id == item.id, Approval.state == "pending")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        session.rollback()
        raise BroadcastError(
            "already_decided", "该申请已经处理过了。", "That request was already decided.", kind="conflict"
        )
    for key, value in values.items():
        setattr(item, key, value)


def _release_broadcast(session: Session, rules: Rules, item: Broadcast, now: float) -> float:
    """Give a broadcast a fresh start when its own has passed (or is too near), keeping its window; held → queued."""
    late = now + rules.start_lead_s - item.start_at
    if late > 0:
        item.start_at += late
        item.expires_at += late
    if item.priority != "emergency" and rules.quiet_hours.contains(item.start_at, rules.timezone):
        raise BroadcastError(
            "quiet_hours",
            f"{rules.quiet_hours} 为静默时段，现在批准将在静默时段播出：请在静默时段结束后再批准。",
            f"{rules.quiet_hours} are quiet hours: approve it once they are over.",
        )
    session.execute(
        update(Delivery).where(Delivery.broadcast_id == item.id, Delivery.state == "held").values(state="queued")
    )
    item.status = "sending"
    return max(late, 0.0)


def approve(
    session: Session,
    platform: Platform,
    user: User,
    approval_id: object,
    comment: object = None,
    *,
    address: str | None = None,
    now: float | None = None,
) -> Approval:
    """Approve: a broadcast is issued and published (with a fresh start if its own passed); a schedule resumes."""
    now = time.time() if now is None else now
    note = _comment(comment, required=False)
    item = _decidable(session, user, approval_id)
    _decide(session, item, user, "approved", note)  # claimed first: a second approver stops here
    detail: dict[str, Any] = {"approval_id": item.id, "comment": note}
    target: Broadcast | None = None
    if item.kind == "broadcast":
        target = session.get(Broadcast, item.object_id)
        assert target is not None
        detail["moved_s"] = round(_release_broadcast(session, platform.rules, target, now), 3)
        detail["start_at"] = target.start_at
    else:
        schedule = session.get(Schedule, item.object_id)
        assert schedule is not None
        schedule.state = "active"
        schedule.materialized_until = now  # occurrences from now on; those while it waited are not played late
    audit.record(
        session,
        user.username,
        "approval.approve",
        object_type=item.kind,
        object_id=item.object_id,
        regions=item.region_codes,
        address=address,
        **detail,
    )
    if target is not None:
        send_broadcast(session, platform, target)  # commits first, then publishes
    else:
        session.commit()
    return item


def reject(
    session: Session,
    user: User,
    approval_id: object,
    comment: object,
    *,
    address: str | None = None,
) -> Approval:
    """Reject with a comment: a broadcast ends `rejected` (its held deliveries go); a schedule stays paused."""
    note = _comment(comment, required=True)
    item = _decidable(session, user, approval_id)
    _decide(session, item, user, "rejected", note)
    if item.kind == "broadcast":
        target = session.get(Broadcast, item.object_id)
        assert target is not None
        # Nothing reached any speaker: no delivery rows, so speakers' histories and alarms stay true.
        session.execute(delete(Delivery).where(Delivery.broadcast_id == target.id, Delivery.state == "held"))
        target.status = REJECTED_STATUS
    audit.record(
        session,
        user.username,
        "approval.reject",
        object_type=item.kind,
        object_id=item.object_id,
        regions=item.region_codes,
        address=address,
        approval_id=item.id,
        comment=note,
    )
    session.commit()
    return item


def describe(session: Session, item: Approval, user: User | None = None) -> dict[str, Any]:
    """The API view of an approval, with who asked and who decided."""
    names = {
        u.id: u.username
        for u in session.scalars(select(User).where(User.id.in_([item.submitted_by, item.decided_by or -1])))
    }
    return {
        "id": item.id,
        "kind": item.kind,
        "object_id": item.object_id,
        "state": item.state,
        "summary": item.summary,
        "targets": list(item.region_codes),
        "submitted_by": names.get(item.submitted_by),
        "submitted_at": item.submitted_at.isoformat(),
        "decided_by": names.get(item.decided_by) if item.decided_by else None,
        "decided_at": item.decided_at.isoformat() if item.decided_at else None,
        "comment": item.comment,
        "may_decide": bool(user and item.state == "pending" and may_decide(session, user, item)),
    }
