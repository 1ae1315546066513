"""SQLAlchemy models of the server (2.0 style)."""

from broadcast.models.accounts import ROLES, ApiToken, LoginAttempt, User
from broadcast.models.alerts import Alert, AlertDecision, FeedState, TriggerState
from broadcast.models.approvals import APPROVAL_KINDS, APPROVAL_STATES, Approval
from broadcast.models.audit import AuditChainHead, AuditEvent
from broadcast.models.base import Base, utcnow
from broadcast.models.broadcasts import (
    DELIVERY_STATES,
    PRIORITIES,
    STATE_ORDER,
    TERMINAL_STATES,
    Broadcast,
    Command,
    Delivery,
)
from broadcast.models.clips import Clip
from broadcast.models.ops import WorkerHeartbeat
from broadcast.models.regions import LEVELS, Region, Speaker
from broadcast.models.schedules import RUN_STATES, SCHEDULE_STATES, Playlist, Schedule, ScheduleRun

__all__ = [
    "APPROVAL_KINDS",
    "APPROVAL_STATES",
    "DELIVERY_STATES",
    "LEVELS",
    "PRIORITIES",
    "ROLES",
    "RUN_STATES",
    "SCHEDULE_STATES",
    "STATE_ORDER",
    "TERMINAL_STATES",
    "Alert",
    "AlertDecision",
    "ApiToken",
    "Approval",
    "AuditChainHead",
    "AuditEvent",
    "Base",
    "Broadcast",
    "Clip",
    "Command",
    "Delivery",
    "FeedState",
    "LoginAttempt",
    "Playlist",
    "Region",
    "Schedule",
    "ScheduleRun",
    "Speaker",
    "TriggerState",
    "User",
    "WorkerHeartbeat",
    "utcnow",
]
