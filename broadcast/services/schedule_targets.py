"""Resolving many schedules' targets from one load of the regions and speakers (the scheduler's bulk path).

`regions.resolve_targets` loads the region tree and walks every grid on each call: right for one broadcast,
seconds for a county's thousands of target sets. `TargetIndex.resolve` gives the same answer (a test pins the
two together) from maps built once per scheduler run; anything it cannot answer plainly (an unknown id, a
target outside the owner's region, no speakers) is None, and the caller asks `resolve_targets` for the error.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.models import Speaker, User
from broadcast.services import regions

logger = logging.getLogger(__name__)


class TargetIndex:
    """The region tree, every speaker's grid, and the enabled speakers beneath each region."""

    def __init__(self, session: Session) -> None:
        self.tree = regions.load_tree(session)
        self.grid_of: dict[str, str] = {}
        self.enabled_under: dict[str, set[str]] = defaultdict(set)  # region -> enabled speakers beneath it
        self.grids_under: dict[str, set[str]] = defaultdict(set)  # region -> every grid beneath it (itself too)
        for code, region in self.tree.items():
            if region.level == "grid":
                for above in regions.ancestors(self.tree, code):
                    self.grids_under[above].add(code)
        by_grid: dict[str, list[str]] = defaultdict(list)
        for sid, grid, enabled in session.execute(select(Speaker.id, Speaker.grid_code, Speaker.enabled)):
            self.grid_of[sid] = grid
            if enabled and grid in self.tree and self.tree[grid].level == "grid":
                by_grid[grid].append(sid)
        for grid, ids in by_grid.items():
            for code in regions.ancestors(self.tree, grid):
                self.enabled_under[code].update(ids)

    def resolve(self, targets: list[str], user: User) -> regions.Resolution | None:
        """What `regions.resolve_targets(session, targets, user)` answers, or None where it would raise."""
        if not targets or len(targets) > 5000 or not all(isinstance(t, str) and t for t in targets):
            return None
        scope = regions.user_scope(user)
        wanted = list(dict.fromkeys(t.strip() for t in targets))
        region_codes = [t for t in wanted if t in self.tree]
        lone = [t for t in wanted if t not in self.tree]
        if any(t not in self.grid_of for t in lone):
            return None
        if not all(regions.within(self.tree, c, scope) for c in region_codes):
            return None
        if not all(regions.within(self.tree, self.grid_of[s], scope) for s in lone):
            return None
        chosen = set(region_codes)
        minimal = [c for c in region_codes if not (set(regions.ancestors(self.tree, c)[1:]) & chosen)]
        lone_ids = [s for s in lone if not (set(regions.ancestors(self.tree, self.grid_of[s])) & chosen)]
        reached: set[str] = set(lone_ids)
        for code in chosen:
            reached |= self.enabled_under.get(code, set())
        if not reached:
            return None
        grids = sorted(set().union(*(self.grids_under.get(code, set()) for code in chosen)))
        return regions.Resolution(reached=sorted(reached), region_codes=minimal, speaker_ids=lone_ids, grids=grids)
