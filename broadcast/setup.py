"""First-time set-up of an instance: schema, signing key and the first admin (no default passwords)."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from broadcast.models import User
from broadcast.platform import Platform
from broadcast.services import accounts, audit
from speakers.signing import KeyPair

logger = logging.getLogger(__name__)


def ensure_signing_key(platform: Platform) -> KeyPair:
    """Load the server's Ed25519 key, making it on first use."""
    path = platform.signing_key_path
    if path.exists():
        return KeyPair.load(path)
    key = KeyPair.generate()
    key.save(path)
    logger.info("made signing key %s", key.key_id)
    return key


def initialize(platform: Platform, admin: str = "admin", password: str | None = None) -> str | None:
    """Create schema, key and first admin; returns the generated password (None if one was given or exists)."""
    platform.db.upgrade()
    key = ensure_signing_key(platform)
    with platform.db.transaction() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        generated = password is None
        secret = accounts.generate_password() if password is None else password
        accounts.create_user(session, admin, secret, "admin", None, actor="init")
        audit.record(session, "init", "instance.init", key_id=key.key_id)
    return secret if generated else None


def password_banner(admin: str, password: str) -> str:
    """The once-only notice of a new admin's generated password."""
    return "\n".join(
        [
            "=" * 64,
            f"已创建管理员 {admin}，初始密码（只显示这一次，请妥善保存）：",
            f"Admin user {admin!r} created; password (shown once):",
            f"    {password}",
            "=" * 64,
        ]
    )
