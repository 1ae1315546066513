"""The region tree: lookups, who may reach what, and resolving targets to speakers and topics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import LEVELS, Region, Speaker, User

PARENT_LEVEL = {"township": "county", "village": "township", "grid": "village"}


def create_region(session: Session, code: str, name: str, level: str, parent_code: str | None) -> Region:
    """Add a region under its parent, checking level order and that the code extends the parent's."""
    if level not in LEVELS:
        raise BroadcastError("invalid_level", f"区域级别无效：{level}", f"Unknown region level: {level}")
    if not code.isdigit():
        raise BroadcastError("invalid_code", f"区域代码只能是数字：{code}", f"A region code is digits only: {code}")
    if level == "county":
        if parent_code is not None:
            raise BroadcastError("invalid_parent", "县级区域没有上级。", "A county has no parent region.")
    else:
        parent = session.get(Region, parent_code) if parent_code else None
        if parent is None or parent.level != PARENT_LEVEL[level]:
            raise BroadcastError(
                "invalid_parent",
                f"{name} 的上级必须是{PARENT_LEVEL[level]}级区域。",
                f"The parent of {name} must be a {PARENT_LEVEL[level]}.",
            )
    region = Region(code=code, name=name, level=level, parent_code=parent_code)
    session.add(region)
    return region


def load_tree(session: Session) -> dict[str, Region]:
    """Every region by code (a county has a few thousand: small enough to hold per request)."""
    return {r.code: r for r in session.scalars(select(Region))}


class RegionNode(Protocol):
    """What walking the tree needs of a region (a `Region`, or a row of `load_outline`)."""

    code: str
    parent_code: str | None
    level: str
    name: str


OUTLINE = select(Region.code, Region.parent_code, Region.level, Region.name)


def load_outline(session: Session) -> dict[str, RegionNode]:
    """Every region's code, parent, level and name by code, as plain rows: a quarter of `load_tree`'s cost.

    A county-wide alert resolves its targets on the way to the tone's publish: no ORM objects there.
    """
    return {row.code: row for row in session.execute(OUTLINE)}  # type: ignore[misc]


def ancestors(tree: Mapping[str, RegionNode], code: str) -> list[str]:
    """The code itself and every ancestor's code, nearest first."""
    chain: list[str] = []
    current: str | None = code
    while current is not None and current in tree and current not in chain:
        chain.append(current)
        current = tree[current].parent_code
    return chain


def within(tree: Mapping[str, RegionNode], code: str, scope: str | None) -> bool:
    """True when region `code` lies inside region `scope` (None: everywhere)."""
    return scope is None or scope in ancestors(tree, code)


def user_scope(user: User) -> str | None:
    """The region a user is bound to; None for an admin (the whole deployment)."""
    return None if user.role == "admin" else user.region_code


def visible_regions(session: Session, user: User) -> list[Region]:
    """Regions a user may see: their own region's subtree plus its ancestors (for context)."""
    tree = load_tree(session)
    scope = user_scope(user)
    if scope is None:
        return sorted(tree.values(), key=lambda r: r.code)
    shown = {c for c in tree if within(tree, c, scope)} | set(ancestors(tree, scope))
    return sorted((tree[c] for c in shown), key=lambda r: r.code)


@dataclass
class Resolution:
    """Targets resolved: the speakers reached and the minimal topic set (regions and single speakers)."""

    reached: list[str]  # the id of every speaker reached, sorted (empty when resolved with ids=False)
    region_codes: list[str] = field(default_factory=list)
    speaker_ids: list[str] = field(default_factory=list)
    grids: list[str] = field(default_factory=list)  # every grid under the region targets

    def speakers(self) -> Any:
        """The reached speakers as a condition on `Speaker`: the enabled ones in the grids, and the lone ones."""
        return or_(and_(Speaker.grid_code.in_(self.grids), Speaker.enabled.is_(True)), Speaker.id.in_(self.speaker_ids))

    @property
    def targets(self) -> list[str]:
        """Region codes then lone speaker ids: what the broadcast was for, as people name it."""
        return self.region_codes + self.speaker_ids

    @property
    def wire_targets(self) -> list[str]:
        """The same in the protocol's text form: `region:CODE` and `speaker:ID`."""
        return [f"region:{c}" for c in self.region_codes] + [f"speaker:{s}" for s in self.speaker_ids]


def resolve_targets(session: Session, targets: list[str], user: User, *, ids: bool = True) -> Resolution:
    """Turn region codes and speaker ids into speakers, refusing unknown ids and anything outside the scope.

    With `ids=False` the reached speakers' ids are not loaded (a county is 10,000+ rows): `Resolution.speakers()`
    selects them in SQL, and only whether there is any is checked here.
    """
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise BroadcastError(
            "targets_required", "请至少选择一个播发区域或终端。", "Choose at least one region or speaker."
        )
    if len(targets) > 5000:
        raise BroadcastError("too_many_targets", "播发目标过多。", "Too many targets.")
    tree = load_outline(session)
    scope = user_scope(user)
    wanted = list(dict.fromkeys(t.strip() for t in targets))
    region_codes = [t for t in wanted if t in tree]
    rest = [t for t in wanted if t not in tree]
    lone = {s.id: s for s in session.scalars(select(Speaker).where(Speaker.id.in_(rest)))} if rest else {}
    unknown = [t for t in rest if t not in lone]
    if unknown:
        shown = "、".join(unknown[:5])
        raise BroadcastError(
            "unknown_target",
            f"未知的区域或终端：{shown}",
            f"Unknown region or speaker: {', '.join(unknown[:5])}",
            kind="not_found",
            unknown=unknown[:50],
        )
    for code in region_codes:
        if not within(tree, code, scope):
            raise forbidden(f"您无权向该区域播发：{tree[code].name}", f"You may not broadcast to {code}.")
    for speaker in lone.values():
        if not within(tree, speaker.grid_code, scope):
            raise forbidden(f"您无权使用该终端：{speaker.id}", f"You may not use speaker {speaker.id}.")
    # Drop targets already covered by a targeted ancestor: one publish per region, never the same twice.
    chosen = set(region_codes)
    minimal_regions = [c for c in region_codes if not (set(ancestors(tree, c)[1:]) & chosen)]
    lone_ids = [s for s, spk in lone.items() if not (set(ancestors(tree, spk.grid_code)) & chosen)]
    grids = sorted(c for c in tree if tree[c].level == "grid" and set(ancestors(tree, c)) & chosen)
    resolution = Resolution(reached=[], region_codes=minimal_regions, speaker_ids=lone_ids, grids=grids)
    if ids:  # ids only: a county-wide target is 10,000+ rows, and nothing here needs the rest of a speaker
        resolution.reached = sorted(session.scalars(select(Speaker.id).where(resolution.speakers())))
    if not (resolution.reached if ids else session.scalar(select(exists().where(resolution.speakers())))):
        raise BroadcastError(
            "no_speakers", "所选区域内没有可用的终端。", "There are no speakers in the chosen targets."
        )
    return resolution


def speaker_regions(tree: dict[str, Region], speaker: Speaker) -> list[str]:
    """A speaker's grid and every ancestor, nearest first: the region topics it listens to."""
    return ancestors(tree, speaker.grid_code)
