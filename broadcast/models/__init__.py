"""SQLAlchemy models of the server (2.0 style)."""

from broadcast.models.accounts import ROLES, ApiToken, LoginAttempt, User
from broadcast.models.audit import AuditEvent
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
from broadcast.models.regions import LEVELS, Region, Speaker

__all__ = [
    "DELIVERY_STATES",
    "LEVELS",
    "PRIORITIES",
    "ROLES",
    "STATE_ORDER",
    "TERMINAL_STATES",
    "ApiToken",
    "AuditEvent",
    "Base",
    "Broadcast",
    "Clip",
    "Command",
    "Delivery",
    "LoginAttempt",
    "Region",
    "Speaker",
    "User",
    "utcnow",
]
