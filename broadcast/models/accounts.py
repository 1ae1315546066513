"""People and machines that may use the system: users, API tokens and login attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from broadcast.models.base import Base, UTCDateTime, utcnow

ROLES = ("admin", "operator", "village_head", "viewer", "warning_source")  # warning_source: posts CAP alerts


class User(Base):
    """A console/API user, scoped to a region (admins: the whole deployment)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), default=None)
    display_name: Mapped[str | None] = mapped_column(String(100), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every console session carries the epoch it was made in; bumping it (logout, new password, new role or
    # region, disabling) ends all of the user's sessions at once, on every web worker.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The console's language for this user ("zh" or "en"); None: the deployment's LANGUAGE setting.
    language: Mapped[str | None] = mapped_column(String(8), default=None)

    # What Flask-Login asks of a user object; the model itself stays free of Flask.
    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    @property
    def is_active(self) -> bool:
        """Flask-Login: a disabled user cannot hold a session."""
        return bool(self.active)

    def get_id(self) -> str:
        """Flask-Login: the session's user key, which changes whenever the user's sessions must end."""
        return f"{self.id}:{self.session_epoch or 0}"


def _end_sessions_on_change(target: User, value: Any, oldvalue: Any, _initiator: Any) -> None:
    if target.id is not None and oldvalue is not value and oldvalue != value:
        target.session_epoch = (target.session_epoch or 0) + 1


for _attribute in (User.password_hash, User.role, User.region_code, User.active):
    event.listen(_attribute, "set", _end_sessions_on_change, active_history=True)


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginAttempt(Base):
    """A failed console login, kept to throttle guessing per (name, address) across all web workers."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_username_address", "username", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
