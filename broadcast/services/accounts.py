"""Users, passwords, API tokens, login throttling and ending sessions."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from broadcast.errors import BroadcastError, not_found
from broadcast.models import ROLES, ApiToken, LoginAttempt, Region, User, utcnow
from broadcast.services import audit

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # longer input is refused without a database lookup (scrypt's cost grows with it)
FAILURE_MEMORY = timedelta(hours=24)  # failed logins older than this no longer slow a (name, address) pair
FIRST_DELAY_S = 30  # the wait after max_failures failures; it doubles with each further failure
TOKEN_TOUCH_S = 60  # a token's last_used_at is written at most this often (API reads stay read-only)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REGION_LEVEL_FOR_ROLE = {"operator": ("county", "township"), "village_head": ("village",)}


def generate_password() -> str:
    """A random password that is easy to type from a printout."""
    return secrets.token_urlsafe(12)


def create_user(
    session: Session, username: str, password: str, role: str, region_code: str | None, *, actor: str = "cli"
) -> User:
    """Create a user, checking name, role, password strength and the region a scoped role needs."""
    if not USERNAME.match(username or ""):
        raise BroadcastError(
            "invalid_username",
            "用户名只能包含字母、数字、点、下划线和短横线，长度 2-64。",
            "A username is 2-64 letters, digits, dots, underscores or dashes.",
        )
    if role not in ROLES:
        raise BroadcastError(
            "invalid_role",
            f"角色无效：{role}（可选：{', '.join(ROLES)}）",
            f"Unknown role: {role} (one of {', '.join(ROLES)})",
        )
    if len(password) < MIN_PASSWORD:
        raise BroadcastError(
            "weak_password",
            f"密码至少 {MIN_PASSWORD} 个字符。",
            f"A password needs at least {MIN_PASSWORD} characters.",
        )
    if role == "admin":
        region_code = None
    elif region_code is None:
        if role not in ("viewer", "warning_source"):
            raise BroadcastError(
                "region_required", "该角色必须指定所属行政区域。", "This role needs a region (--region CODE)."
            )
    else:
        region = session.get(Region, region_code)
        if region is None:
            raise not_found("行政区域", "Region", region_code)
        allowed = REGION_LEVEL_FOR_ROLE.get(role)
        if allowed and region.level not in allowed:
            raise BroadcastError(
                "region_level",
                f"角色 {role} 不能绑定到{region.level}级区域。",
                f"Role {role} cannot be bound to a {region.level} region.",
            )
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise BroadcastError("user_exists", f"用户已存在：{username}", f"User exists: {username}", kind="conflict")
    user = User(username=username, password_hash=generate_password_hash(password), role=role, region_code=region_code)
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", object_type="user", object_id=user.id, role=role, region=region_code)
    return user


def find_user(session: Session, username: str) -> User:
    """A user by name, or a not-found error."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found("用户", "User", username)
    return user


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, *, actor: str = "cli") -> str:
    """Create an API token for a user; the token itself is returned once and only its hash is kept."""
    token = "vb_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_hash_token(token), prefix=token[:10]))
    audit.record(session, actor, "token.create", object_type="user", object_id=user.id)
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user behind a bearer token, or None; marks the token used at most once a minute."""
    if not token or len(token) > 200:
        return None
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked.is_(False), User.active.is_(True))
    ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= timedelta(seconds=TOKEN_TOUCH_S):
        row.last_used_at = now  # the caller commits when the session is dirty
    return user


@dataclass(frozen=True)
class Principal:
    """Who an API call acts for (a token's user or a console session's): enough to scope it without the ORM user."""

    user_id: int
    role: str
    region_code: str | None
    token_id: int | None  # None: a console session, not a token
    last_used_at: datetime | None


def principal_for_token(session: Session, token: str) -> Principal | None:
    """The active user behind a bearer token as plain values (one select, no ORM objects), or None."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(User.id, User.role, User.region_code, ApiToken.id, ApiToken.last_used_at)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked.is_(False), User.active.is_(True))
    ).first()
    return None if row is None else Principal(*row)


def note_token_use(session: Session, principal: Principal) -> bool:
    """Write the token's last_used_at if it is a minute old or more; True when it wrote (the caller commits)."""
    now = utcnow()
    stale = now - timedelta(seconds=TOKEN_TOUCH_S)
    if principal.last_used_at is not None and principal.last_used_at > stale:
        return False
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == principal.token_id, or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= stale))
        .values(last_used_at=now)
    )
    return True


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def _clean(value: str) -> str:
    """A name or address as it may be stored: no control characters, at most 64 characters."""
    return CONTROL.sub("?", value)[:64]


def throttle_wait(session: Session, username: str, address: str, *, max_failures: int, lock_seconds: int) -> int:
    """Seconds this (name, address) pair must still wait before its next login attempt (0: may try now).

    After `max_failures` recent failures the wait is FIRST_DELAY_S, doubling with each further failure up to
    `lock_seconds`. Only the pair is slowed: a stranger's failures from elsewhere never lock the real user out.
    """
    now = utcnow()
    times = list(
        session.scalars(
            select(LoginAttempt.at)
            .where(
                LoginAttempt.username == _clean(username),
                LoginAttempt.address == _clean(address),
                LoginAttempt.at >= now - FAILURE_MEMORY,
            )
            .order_by(LoginAttempt.at.desc())
        )
    )
    if len(times) < max_failures:
        return 0
    wait = min(FIRST_DELAY_S * 2 ** min(len(times) - max_failures, 30), lock_seconds)
    remaining = wait - (now - times[0]).total_seconds()
    return max(0, math.ceil(remaining))


def login(
    session: Session, username: str, password: str, address: str, *, max_failures: int, lock_seconds: int
) -> User:
    """Check a console login; a (name, address) pair with too many recent failures must wait (429).

    An unknown name costs the same scrypt work as a known one, so timing does not tell which names exist.
    """
    wait = throttle_wait(session, username, address, max_failures=max_failures, lock_seconds=lock_seconds)
    if wait > 0:
        audit.record(session, _clean(username) or "-", "login.locked", address=_clean(address), wait_s=wait)
        session.commit()
        raise BroadcastError(
            "login_locked",
            f"登录失败次数过多，请 {wait} 秒后再试。",
            f"Too many failed logins; try again in {wait} seconds.",
            kind="rate_limited",
            retry_after_s=wait,
        )
    user = None
    if USERNAME.match(username or "") and len(password) <= MAX_PASSWORD:
        user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _dummy_hash()
    matches = check_password_hash(stored, password[:MAX_PASSWORD])
    if user is None or not user.active or not matches:
        session.add(LoginAttempt(username=_clean(username), address=_clean(address)))
        audit.record(session, _clean(username) or "-", "login.failed", address=_clean(address))
        session.commit()
        raise BroadcastError("login_failed", "用户名或密码错误。", "Wrong username or password.", kind="unauthorized")
    session.execute(
        delete(LoginAttempt).where(LoginAttempt.username == username, LoginAttempt.address == _clean(address))
    )
    audit.record(session, user.username, "login", object_type="user", object_id=user.id, address=address)
    return user


def unlock(session: Session, username: str, actor: str) -> int:
    """Forget every failed login against a name (from any address), so it may log in now; returns how many."""
    user = find_user(session, username)
    result = session.execute(delete(LoginAttempt).where(LoginAttempt.username == user.username))
    cleared = int(getattr(result, "rowcount", 0) or 0)
    audit.record(session, actor, "user.unlock", object_type="user", object_id=user.id, cleared=cleared)
    return cleared


def end_sessions(session: Session, user: User, *, actor: str, reason: str = "logout") -> None:
    """End every console session of a user, on every web worker (a copied cookie stops working too)."""
    user.session_epoch = (user.session_epoch or 0) + 1
    audit.record(session, actor, reason, object_type="user", object_id=user.id)
