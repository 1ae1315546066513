"""Managing people: list, create, change role and region, language, reset password, disable, unlock, API tokens."""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import ROLES, ApiToken, LoginAttempt, Region, User
from broadcast.services import accounts, audit, regions

logger = logging.getLogger(__name__)

ROLE_ZH = {
    "admin": "管理员",
    "operator": "操作员",
    "village_head": "村负责人",
    "viewer": "只读",
    "warning_source": "预警信息源",
}

# The console's languages a user may choose (zh is the source of every message); None: the deployment's LANGUAGE.
LANGUAGES = ("zh", "en")


def _actor(user: User | None) -> str:
    return user.username if user is not None else "cli"


def may_manage(actor: User | None, target_role: str, target_region: str | None, tree: dict[str, Region]) -> bool:
    """Admins manage everyone; operators manage non-admins bound inside their own region (None: the shell)."""
    if actor is None or actor.role == "admin":
        return True
    if actor.role != "operator" or target_role == "admin" or target_region is None:
        return False
    return regions.within(tree, target_region, regions.user_scope(actor))


def _need(actor: User | None, target: User, tree: dict[str, Region]) -> None:
    if not may_manage(actor, target.role, target.region_code, tree):
        raise forbidden(f"您无权管理用户 {target.username}。", f"You may not manage user {target.username}.")


def find(session: Session, actor: User | None, username: str) -> User:
    """A user the actor may manage, or a not-found/forbidden error."""
    user = accounts.find_user(session, username)
    _need(actor, user, regions.load_tree(session))
    return user


def list_users(session: Session, actor: User | None) -> list[User]:
    """Users the actor may manage, by name."""
    if actor is not None and actor.role not in ("admin", "operator"):
        raise forbidden()
    tree = regions.load_tree(session)
    found = session.scalars(select(User).order_by(User.username))
    return [u for u in found if u.id == getattr(actor, "id", None) or may_manage(actor, u.role, u.region_code, tree)]


def create(session: Session, actor: User | None, username: str, role: str, region_code: str | None) -> tuple[User, str]:
    """Create a user with a generated password (returned once)."""
    if actor is not None and actor.role not in ("admin", "operator"):
        raise forbidden()
    if not may_manage(actor, role, region_code, regions.load_tree(session)):
        raise forbidden("您只能在本辖区内创建非管理员用户。", "You may only create non-admin users in your own region.")
    password = accounts.generate_password()
    user = accounts.create_user(session, username, password, role, region_code, actor=_actor(actor))
    return user, password


def set_role(session: Session, actor: User | None, username: str, role: str, region_code: str | None) -> User:
    """Change a user's role and region (the same rules as creating one)."""
    user = find(session, actor, username)
    tree = regions.load_tree(session)
    if not may_manage(actor, role, region_code, tree):
        raise forbidden("您只能授予本辖区内的非管理员角色。", "You may only grant non-admin roles in your own region.")
    if role not in ROLES:
        raise BroadcastError("invalid_role", f"角色无效：{role}", f"Unknown role: {role}")
    if role == "admin":
        region_code = None
    elif region_code is None and role != "viewer":
        raise BroadcastError("region_required", "该角色必须指定所属行政区域。", "This role needs a region.")
    elif region_code is not None:
        region = tree.get(region_code)
        if region is None:
            raise not_found("行政区域", "Region", region_code)
        allowed = accounts.REGION_LEVEL_FOR_ROLE.get(role)
        if allowed and region.level not in allowed:
            raise BroadcastError(
                "region_level",
                f"角色 {ROLE_ZH[role]} 不能绑定到该级区域（{region.level}）。",
                f"Role {role} cannot be bound to a {region.level} region.",
            )
    if user.id == getattr(actor, "id", None) and role != user.role:
        raise BroadcastError("own_role", "不能修改自己的角色。", "You cannot change your own role.", kind="forbidden")
    before = [user.role, user.region_code]
    user.role, user.region_code = role, region_code
    audit.record(
        session,
        _actor(actor),
        "user.role",
        object_type="user",
        object_id=user.id,
        before=before,
        after=[role, region_code],
    )
    session.flush()
    return user


def set_active(session: Session, actor: User | None, username: str, active: bool) -> User:
    """Disable a user (their sessions and tokens stop working at once) or enable them again."""
    user = find(session, actor, username)
    if not active and user.id == getattr(actor, "id", None):
        raise BroadcastError("own_account", "不能停用自己的账号。", "You cannot disable yourself.", kind="forbidden")
    if user.active != active:
        user.active = active
        audit.record(
            session, _actor(actor), "user.enable" if active else "user.disable", object_type="user", object_id=user.id
        )
        session.flush()
    return user


def set_language(session: Session, actor: User | None, username: str, language: str | None) -> User:
    """An admin or operator chooses a user's console language ("zh", "en", or None: the deployment's default)."""
    return _language(session, actor, find(session, actor, username), language)


def set_own_language(session: Session, user: User, language: str | None) -> User:
    """A user chooses their own console language (anyone may, viewers too)."""
    return _language(session, user, user, language)


def _language(session: Session, actor: User | None, user: User, language: str | None) -> User:
    if language is not None and language not in LANGUAGES:
        raise BroadcastError("invalid_language", f"语言无效：{language:.20}", f"Unknown language: {language:.20}")
    if user.language != language:
        audit.record(
            session,
            _actor(actor),
            "user.language",
            object_type="user",
            object_id=user.id,
            before=user.language,
            after=language,
        )
        user.language = language
        session.flush()
    return user


def unlock(session: Session, actor: User | None, username: str) -> int:
    """Forget a user's failed logins so they may try again now; returns how many were cleared."""
    user = find(session, actor, username)
    return accounts.unlock(session, user.username, _actor(actor))


def failed_logins(session: Session, username: str) -> int:
    """Failed logins on record against a name (what `unlock` clears)."""
    return session.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.username == username)) or 0


def reset_password(session: Session, actor: User | None, username: str) -> str:
    """Give a user a new generated password (returned once); their sessions end."""
    user = find(session, actor, username)
    password = accounts.generate_password()
    user.password_hash = generate_password_hash(password)
    audit.record(session, _actor(actor), "user.reset_password", object_type="user", object_id=user.id)
    session.flush()
    return password


def set_password(session: Session, actor: User | None, username: str, new: str) -> User:
    """Set a user's password to one the operator chose (the shell's `users set-password`); their sessions end."""
    user = find(session, actor, username)
    if len(new or "") < accounts.MIN_PASSWORD:
        raise BroadcastError(
            "weak_password",
            f"密码至少 {accounts.MIN_PASSWORD} 个字符。",
            f"A password needs at least {accounts.MIN_PASSWORD} characters.",
        )
    user.password_hash = generate_password_hash(new)
    audit.record(session, _actor(actor), "user.set_password", object_type="user", object_id=user.id)
    session.flush()
    return user


def change_own_password(session: Session, user: User, old: str, new: str) -> None:
    """A user changes their own password, proving the old one."""
    if not check_password_hash(user.password_hash, old or ""):
        raise BroadcastError("wrong_password", "原密码不正确。", "The current password is wrong.", kind="forbidden")
    if len(new or "") < accounts.MIN_PASSWORD:
        raise BroadcastError(
            "weak_password",
            f"密码至少 {accounts.MIN_PASSWORD} 个字符。",
            f"A password needs at least {accounts.MIN_PASSWORD} characters.",
        )
    user.password_hash = generate_password_hash(new)
    audit.record(session, user.username, "user.password", object_type="user", object_id=user.id)
    session.flush()


def list_tokens(session: Session, actor: User | None, username: str) -> list[ApiToken]:
    """A user's API tokens (prefix, dates, revoked), newest first."""
    user = find(session, actor, username)
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())))


def create_token(session: Session, actor: User | None, username: str) -> str:
    """A new API token for a user (returned once)."""
    return accounts.create_token(session, find(session, actor, username), actor=_actor(actor))


def revoke_token(session: Session, actor: User | None, token_id: int) -> ApiToken:
    """Revoke one API token; it stops working at once."""
    token = session.get(ApiToken, token_id)
    owner = session.get(User, token.user_id) if token is not None else None
    if token is None or owner is None:
        raise not_found("令牌", "Token", token_id)
    _need(actor, owner, regions.load_tree(session))
    if not token.revoked:
        token.revoked = True
        audit.record(session, _actor(actor), "token.revoke", object_type="user", object_id=owner.id, token=token.prefix)
        session.flush()
    return token
