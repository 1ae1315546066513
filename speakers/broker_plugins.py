"""amqtt plugins of the embedded broker: Mosquitto "$7$" password file, account identity, topic ACL rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from speakers import acl
from speakers.mosquitto import parse_mosquitto_acl, read_password_file, verify_password

logger = logging.getLogger(__name__)

# ACL rules of each running embedded broker, by key; None = no restriction.
LIVE_RULES: dict[str, acl.AclRules | None] = {}
# The ACL file behind a broker's rules, and the mtime last read: re-read when it changes, at every CONNECT and
# SUBSCRIBE, so an account added a moment ago has its topics (and a will on them) when it first connects.
ACL_FILES: dict[str, tuple[Path, int]] = {}


def refresh_rules(key: str) -> None:
    """Re-read a broker's ACL file into LIVE_RULES when it changed on disk (a cheap stat otherwise)."""
    entry = ACL_FILES.get(key)
    if entry is None:
        return
    path, seen = entry
    try:
        mtime = path.stat().st_mtime_ns
        if mtime != seen:
            LIVE_RULES[key] = parse_mosquitto_acl(path.read_text(encoding="utf-8"))
            ACL_FILES[key] = (path, mtime)
    except OSError:
        logger.warning("embedded broker: cannot read %s", path)


class PasswordFileAuth(BaseAuthPlugin):
    """Authenticate against a Mosquitto 2 password file; re-read it whenever it changes on disk."""

    @dataclass
    class Config:
        """Plugin settings."""

        password_file: str = ""  # path of the "username:$7$..." file

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._path = Path(self.config.password_file)
        self._mtime = -1.0
        self._users: dict[str, str] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            self._users = {}
            return
        if mtime != self._mtime:
            self._users = read_password_file(self._path)
            self._mtime = mtime
            logger.info("embedded broker: %d accounts loaded", len(self._users))

    async def authenticate(self, *, session: Session) -> bool | None:
        """Accept only a known user with the right password."""
        self._reload()
        hashed = self._users.get(session.username or "")
        ok = bool(hashed) and verify_password(session.password or "", hashed or "")
        if not ok:
            logger.info("embedded broker: refused %r (client %s)", session.username, session.client_id)
        return ok


class IdentityAuth(BaseAuthPlugin):
    """A broker account is an identity: refuse a CONNECT that would let one account act as another.

    - a speaker account (not one of the server's) must use its user name as its client id, so it can never
      take over another speaker's session nor the server's (`vb-worker-...`) ones;
    - the last will must be a topic the account may publish to (and obeys the ACL like any publish).
    The server's accounts are `server_users`, or else every account with a wildcard write rule.
    """

    @dataclass
    class Config:
        """Plugin settings."""

        rules_key: str = ""  # key into LIVE_RULES
        server_users: str = ""  # comma-separated user names allowed any client id
        bind_client_ids: bool = True  # False: anonymous brokers without accounts

    async def authenticate(self, *, session: Session) -> bool | None:
        """Refuse a foreign client id or a will outside the account's topics."""
        refresh_rules(self.config.rules_key)
        rules = LIVE_RULES.get(self.config.rules_key)
        user = session.username or "anonymous"
        servers = {u for u in self.config.server_users.split(",") if u} or acl.server_accounts(rules)
        if self.config.bind_client_ids and session.username and user not in servers and session.client_id != user:
            logger.warning(
                "embedded broker: refused %r using the client id %r of another account", user, session.client_id
            )
            return False
        if session.will_flag and not acl.may_publish(rules, user, session.will_topic or ""):
            logger.warning("embedded broker: refused %r with a last will on %s", user, session.will_topic)
            return False
        return True


class AclRulesPlugin(BaseTopicPlugin):
    """Enforce `speakers.acl` rules on subscribe, publish and delivery."""

    @dataclass
    class Config:
        """Plugin settings."""

        rules_key: str = ""  # key into LIVE_RULES, so the broker can replace the rules while running

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        """Allow or refuse one action on one topic."""
        if action == Action.SUBSCRIBE:
            refresh_rules(self.config.rules_key)
        rules = LIVE_RULES.get(self.config.rules_key)
        user = (session.username if session else None) or "anonymous"
        if topic is None:
            return False
        if action == Action.SUBSCRIBE:
            return acl.may_subscribe(rules, user, topic)
        if action == Action.PUBLISH:
            allowed = acl.may_publish(rules, user, topic)
            if not allowed:
                logger.info("embedded broker: %r may not publish to %s", user, topic)
            return allowed
        return acl.may_receive(rules, user, topic)
