"""Users, passwords, API tokens and the login rate limit."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from broadcast.errors import BroadcastError, not_found
from broadcast.models import ROLES, ApiToken, LoginAttempt, Region, User, utcnow
from broadcast.services import audit

USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")
MIN_PASSWORD = 10
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
        if role != "viewer":
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
    """The active user behind a bearer token, or None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token), ApiToken.revoked.is_(False)))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    row.last_used_at = utcnow()
    return user


def login(
    session: Session, username: str, password: str, address: str, *, max_failures: int, lock_seconds: int
) -> User:
    """Check a console login, refusing while too many recent failures stand against the name or address."""
    since = utcnow() - timedelta(seconds=lock_seconds)
    failures = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.at >= since, or_(LoginAttempt.username == username, LoginAttempt.address == address))
    )
    if (failures or 0) >= max_failures:
        audit.record(session, username or "-", "login.locked", address=address)
        session.commit()
        raise BroadcastError(
            "login_locked",
            f"登录失败次数过多，请 {lock_seconds // 60} 分钟后再试。",
            f"Too many failed logins; try again in {lock_seconds // 60} minutes.",
            kind="rate_limited",
        )
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not check_password_hash(user.password_hash, password):
        session.add(LoginAttempt(username=username[:64], address=address[:64]))
        audit.record(session, username[:64] or "-", "login.failed", address=address)
        session.commit()
        raise BroadcastError("login_failed", "用户名或密码错误。", "Wrong username or password.", kind="unauthorized")
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    audit.record(session, user.username, "login", object_type="user", object_id=user.id, address=address)
    return user
