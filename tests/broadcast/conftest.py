"""Fixtures for server tests: the demo county, users of every role and their API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from broadcast import demo
from broadcast.db import Database
from broadcast.services import accounts, regions

HUANGSHA = "421224104000"  # township 黄沙铺镇
DALU = "421224205000"  # township 大路乡
HUANGSHA_VILLAGE = "421224104201"  # 黄沙村
COUNTY = "421224000000"


def database_with_regions(database_url: str, rows: Iterable[tuple[str, str, str, str | None]]) -> Database:
    """A current database (migrations run) holding these regions: (code, name, level, parent), parents first."""
    database = Database(database_url)
    database.upgrade()
    with database.transaction() as session:
        for code, name, level, parent in rows:
            regions.create_region(session, code, name, level, parent)
            session.flush()
    return database


def seed_county(app: Any) -> dict[str, str]:
    """Seed the demo county and one user per role; returns each role's API token."""
    platform = app.extensions["platform"]
    with platform.db.transaction() as session:
        demo.seed(session)
        tokens = {"admin": accounts.create_token(session, accounts.find_user(session, "admin"))}
        for name, role, region in (
            ("operator", "operator", HUANGSHA),
            ("village", "village_head", HUANGSHA_VILLAGE),
            ("viewer", "viewer", HUANGSHA),
        ):
            user = accounts.create_user(session, name, f"{name}-password-1", role, region)
            tokens[role] = accounts.create_token(session, user)
    return tokens


@pytest.fixture
def tokens(app: Any) -> dict[str, str]:
    """API tokens by role on a seeded demo county."""
    return seed_county(app)


def auth(token: str, lang: str = "zh") -> dict[str, str]:
    """Headers for an API call."""
    return {"Authorization": f"Bearer {token}", "Accept-Language": lang}
