"""Managing the region tree: code rules, create, rename, move and retire, within the user's scope."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import LEVELS, Base, Region, Speaker, User
from broadcast.services import audit, regions
from broadcast.services.spreadsheets import refuse_formula

logger = logging.getLogger(__name__)

PARENT_LEVEL = regions.PARENT_LEVEL
LEVEL_ZH = {"county": "县", "township": "乡镇", "village": "村/社区", "grid": "网格"}
LEVEL_ALIASES = {
    **{level: level for level in LEVELS},
    "县": "county",
    "县级": "county",
    "区": "county",
    "乡镇": "township",
    "乡": "township",
    "镇": "township",
    "街道": "township",
    "村": "village",
    "社区": "village",
    "村/社区": "village",
    "网格": "grid",
}
CODE_LENGTH = 12  # 统计用区划代码 of a county, township or village
PREFIX_LENGTH = {"county": 6, "township": 9, "village": 12}  # the digits a child's code must repeat
MAX_CODE = 32
MAX_NAME = 100


class Node(Protocol):
    """Anything with a region's code and level (a Region, or a row about to become one)."""

    code: str
    level: str


def parse_level(value: str) -> str:
    """A level from its English or Chinese name (county|township|village|grid or 县|乡镇|村|网格)."""
    level = LEVEL_ALIASES.get((value or "").strip().lower()) or LEVEL_ALIASES.get((value or "").strip())
    if level is None:
        raise BroadcastError(
            "invalid_level",
            f"层级无效：{value!r}（县、乡镇、村、网格）",
            f"Unknown level: {value!r} (county, township, village or grid)",
            column="level",
        )
    return level


def check_name(name: str) -> str:
    """A region's name: 1-100 characters, trimmed."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise BroadcastError(
            "invalid_name",
            f"名称不能为空且不超过 {MAX_NAME} 个字。",
            f"A name is 1-{MAX_NAME} characters.",
            column="name",
        )
    return refuse_formula(name, "name", "名称")


def check_code(code: str, level: str, parent: Node | None, *, parent_code: str | None = None) -> None:
    """Refuse a code that breaks the rules: 12 digits, each level's code lying under its parent's; grids longer."""
    column = "code"
    if not code or not code.isdigit() or len(code) > MAX_CODE:
        raise BroadcastError(
            "invalid_code", f"区划代码只能是数字：{code!r}", f"A region code is digits only: {code!r}", column=column
        )
    if level != "grid" and len(code) != CODE_LENGTH:
        raise BroadcastError(
            "invalid_code",
            f"{LEVEL_ZH[level]}级区划代码必须是 {CODE_LENGTH} 位数字：{code}",
            f"A {level} code has {CODE_LENGTH} digits: {code}",
            column=column,
        )
    if level == "county":
        if parent is not None or parent_code:
            raise BroadcastError(
                "invalid_parent", "县级区域没有上级。", "A county has no parent region.", column="parent_code"
            )
        return
    if parent is None:
        raise BroadcastError(
            "unknown_parent",
            f"上级区域不存在：{parent_code or '（空）'}",
            f"Unknown parent region: {parent_code or '(empty)'}",
            column="parent_code",
        )
    if parent.level != PARENT_LEVEL[level]:
        want = PARENT_LEVEL[level]
        got = LEVEL_ZH.get(parent.level, parent.level)
        raise BroadcastError(
            "invalid_parent",
            f"{LEVEL_ZH[level]}的上级必须是{LEVEL_ZH[want]}，而 {parent.code} 是{got}。",
            f"The parent of a {level} must be a {want}; {parent.code} is a {parent.level}.",
            column="parent_code",
        )
    prefix = parent.code[: PREFIX_LENGTH[parent.level]]
    if not code.startswith(prefix) or code == parent.code or (level == "grid" and len(code) <= len(parent.code)):
        raise BroadcastError(
            "code_outside_parent",
            f"区划代码 {code} 不在上级 {parent.code} 之下（应以 {prefix} 开头{'并更长' if level == 'grid' else ''}）。",
            f"Code {code} does not lie under its parent {parent.code} (it must start with {prefix}"
            f"{' and be longer' if level == 'grid' else ''}).",
            column=column,
        )


def may_manage(user: User | None, tree: dict[str, Region], code: str) -> bool:
    """True when the user may change region `code` (None: the command line, trusted)."""
    if user is None or user.role == "admin":
        return True
    if user.role != "operator":
        return False
    scope = regions.user_scope(user)
    return scope is not None and code != scope and regions.within(tree, code, scope)


def _need_manage(user: User | None, tree: dict[str, Region], code: str) -> None:
    if not may_manage(user, tree, code):
        raise forbidden(f"您无权管理该区域：{code}", f"You may not manage region {code}.")


def _actor(user: User | None) -> str:
    return user.username if user is not None else "cli"


def create(session: Session, user: User | None, *, code: str, name: str, level: str, parent_code: str | None) -> Region:
    """Add a region, checking the code rules and that it lies inside the user's scope."""
    code = (code or "").strip()
    level = parse_level(level)
    name = check_name(name)
    parent_code = (parent_code or "").strip() or None
    tree = regions.load_tree(session)
    parent = tree.get(parent_code) if parent_code else None
    check_code(code, level, parent, parent_code=parent_code)
    if code in tree:
        raise BroadcastError(
            "region_exists", f"区划代码已存在：{code}", f"Region exists: {code}", kind="conflict", column="code"
        )
    tree[code] = Region(code=code, name=name, level=level, parent_code=parent_code)
    _need_manage(user, tree, code)
    region = regions.create_region(session, code, name, level, parent_code)
    audit.record(session, _actor(user), "region.create", object_type="region", object_id=code, regions=[code])
    session.flush()
    return region


def update(
    session: Session, user: User | None, code: str, *, name: str | None = None, parent_code: str | None = None
) -> Region:
    """Rename a region and/or move it under another parent of the right level (its code must still lie under it)."""
    tree = regions.load_tree(session)
    region = tree.get(code)
    if region is None:
        raise not_found("行政区域", "Region", code)
    _need_manage(user, tree, code)
    changes: dict[str, Any] = {}
    if name is not None and check_name(name) != region.name:
        changes["name"] = [region.name, check_name(name)]
        region.name = check_name(name)
    if parent_code is not None and parent_code != region.parent_code:
        parent = tree.get(parent_code)
        check_code(region.code, region.level, parent, parent_code=parent_code)
        if user is not None and not regions.within(tree, parent_code, regions.user_scope(user)):
            raise forbidden(f"您无权移入该区域：{parent_code}", f"You may not move regions into {parent_code}.")
        if code in regions.ancestors(tree, parent_code):
            raise BroadcastError("region_cycle", "不能移到自己的下级。", "A region cannot move under itself.")
        changes["parent_code"] = [region.parent_code, parent_code]
        region.parent_code = parent_code
    if changes:
        audit.record(session, _actor(user), "region.update", object_type="region", object_id=code, **changes)
        session.flush()
    return region


def _schedule_table() -> Table | None:
    table = Base.metadata.tables.get("schedules")
    return table if table is not None and "targets" in table.c else None


def dependents(session: Session, code: str) -> dict[str, list[str]]:
    """What still hangs on a region: child regions, speakers (with retired ones), users and schedules."""
    found: dict[str, list[str]] = {}
    children = list(session.scalars(select(Region.code).where(Region.parent_code == code).order_by(Region.code)))
    if children:
        found["regions"] = children
    speakers = list(session.scalars(select(Speaker.id).where(Speaker.grid_code == code).order_by(Speaker.id)))
    if speakers:
        found["speakers"] = speakers
    users = list(session.scalars(select(User.username).where(User.region_code == code).order_by(User.username)))
    if users:
        found["users"] = users
    table = _schedule_table()
    if table is not None:
        key = table.c.id if "id" in table.c else next(iter(table.primary_key.columns))
        query = select(key, table.c.targets)
        if "state" in table.c:  # ended and deleted schedules no longer hold a region
            query = query.where(table.c.state.in_(("active", "paused")))
        held = [
            str(k)
            for k, targets in session.execute(query)
            if code in (targets or []) or f"region:{code}" in (targets or [])
        ]
        if held:
            found["schedules"] = held
    return found


DEPENDENT_ZH = {"regions": "下级区域", "speakers": "终端", "users": "用户", "schedules": "定时计划"}


def retire(session: Session, user: User | None, code: str) -> None:
    """Remove a region nothing depends on; refuse with the list of what still does."""
    tree = regions.load_tree(session)
    if code not in tree:
        raise not_found("行政区域", "Region", code)
    _need_manage(user, tree, code)
    held = dependents(session, code)
    if held:
        zh = "；".join(f"{DEPENDENT_ZH[k]}：{'、'.join(v[:10])}{' 等' if len(v) > 10 else ''}" for k, v in held.items())
        en = "; ".join(f"{k}: {', '.join(v[:10])}{' …' if len(v) > 10 else ''}" for k, v in held.items())
        raise BroadcastError(
            "region_in_use",
            f"区域 {code} 仍在使用，不能撤销（{zh}）。",
            f"Region {code} is still in use and cannot be retired ({en}).",
            kind="conflict",
            dependents={k: v[:100] for k, v in held.items()},
        )
    region = tree[code]
    audit.record(
        session,
        _actor(user),
        "region.retire",
        object_type="region",
        object_id=code,
        name=region.name,
        level=region.level,
    )
    session.delete(region)
    session.flush()


def counts(session: Session) -> dict[str, int]:
    """Regions per level."""
    rows = session.execute(select(Region.level, func.count()).group_by(Region.level))
    return {level: int(n) for level, n in rows}
