"""Pins of the region tree: building it, who sees and reaches what, and resolving targets to speakers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.models import Region, Speaker, User
from broadcast.services import regions
from tests.broadcast.conftest import database_with_regions

COUNTY, TOWN, OTHER_TOWN = "100000", "100100", "100200"
VILLAGE, OTHER_VILLAGE = "100101", "100201"
GRID, GRID_B, OTHER_GRID = "1001010", "1001011", "1002010"
EMPTY_GRID = "1001012"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A current database holding a small county: two townships, three grids with speakers and one without."""
    database = database_with_regions(
        database_url,
        (
            (COUNTY, "县", "county", None),
            (TOWN, "甲镇", "township", COUNTY),
            (OTHER_TOWN, "乙镇", "township", COUNTY),
            (VILLAGE, "甲村", "village", TOWN),
            (OTHER_VILLAGE, "乙村", "village", OTHER_TOWN),
            (GRID, "甲一网格", "grid", VILLAGE),
            (GRID_B, "甲二网格", "grid", VILLAGE),
            (EMPTY_GRID, "甲三网格", "grid", VILLAGE),
            (OTHER_GRID, "乙一网格", "grid", OTHER_VILLAGE),
        ),
    )
    with database.transaction() as session:
        for speaker_id, grid, enabled in (
            ("s1", GRID, True), ("s2", GRID, True), ("s3", GRID_B, True), ("s-off", GRID_B, False),
            ("s4", OTHER_GRID, True), ("s-off-empty", EMPTY_GRID, False),
        ):  # fmt: skip
            session.add(Speaker(id=speaker_id, name=speaker_id, grid_code=grid, enabled=enabled))
    yield database
    database.dispose()


def user(role: str = "operator", region: str | None = TOWN) -> User:
    """A user (not stored): only the role and the region matter here."""
    return User(username=f"u-{role}", password_hash="x", role=role, region_code=region)


def resolve(db: Database, targets: Any, who: User | None = None) -> regions.Resolution:
    """Resolve targets for a user (an admin unless told)."""
    with db.transaction() as session:
        return regions.resolve_targets(session, targets, who or user("admin", None))


def refusal(db: Database, targets: Any, who: User | None = None) -> BroadcastError:
    """The error resolving these targets raises."""
    with pytest.raises(BroadcastError) as caught:
        resolve(db, targets, who)
    return caught.value


# -- building the tree --


def test_the_tree_is_built_level_by_level(db: Database) -> None:
    with db.transaction() as session:
        tree = regions.load_tree(session)
        assert len(tree) == 9
        assert {c: (r.level, r.parent_code, r.name) for c, r in tree.items() if c in (COUNTY, GRID)} == {
            COUNTY: ("county", None, "县"),
            GRID: ("grid", VILLAGE, "甲一网格"),
        }
        made = regions.create_region(session, "1001013", "甲四网格", "grid", VILLAGE)
        assert (made.code, made.name, made.level, made.parent_code) == ("1001013", "甲四网格", "grid", VILLAGE)
        assert made in session.new


@pytest.mark.parametrize(
    ("code", "level", "parent", "error", "en"),
    [
        ("200000", "province", None, "invalid_level", "Unknown region level: province"),
        ("20000A", "county", None, "invalid_code", "A region code is digits only: 20000A"),
        ("200000", "county", COUNTY, "invalid_parent", "A county has no parent region."),
        ("100300", "township", None, "invalid_parent", "The parent of 新 must be a county."),
        ("100300", "township", "999999", "invalid_parent", "The parent of 新 must be a county."),
        ("100102", "village", COUNTY, "invalid_parent", "The parent of 新 must be a township."),
        ("1001019", "grid", TOWN, "invalid_parent", "The parent of 新 must be a village."),
        ("100103", "village", GRID, "invalid_parent", "The parent of 新 must be a township."),
    ],
)
def test_a_region_out_of_order_is_refused(
    db: Database, code: str, level: str, parent: str | None, error: str, en: str
) -> None:
    with db.transaction() as session, pytest.raises(BroadcastError) as caught:
        regions.create_region(session, code, "新", level, parent)
    assert (caught.value.code, caught.value.kind, caught.value.en) == (error, "invalid", en)
    if error == "invalid_parent":
        zh = "县级区域没有上级。" if level == "county" else f"新 的上级必须是{regions.PARENT_LEVEL[level]}级区域。"
    else:
        zh = {"invalid_level": "区域级别无效：province", "invalid_code": "区域代码只能是数字：20000A"}[error]
    assert caught.value.zh == zh
    with db.transaction() as session:
        assert code not in regions.load_tree(session) or code == COUNTY


# -- ancestry and scope --


def test_ancestors_run_from_the_region_up_to_the_county(db: Database) -> None:
    with db.transaction() as session:
        tree = regions.load_tree(session)
    assert regions.ancestors(tree, GRID) == [GRID, VILLAGE, TOWN, COUNTY]
    assert regions.ancestors(tree, COUNTY) == [COUNTY]
    assert regions.ancestors(tree, "nowhere") == []
    speaker = Speaker(id="s9", name="s9", grid_code=OTHER_GRID)
    assert regions.speaker_regions(tree, speaker) == [OTHER_GRID, OTHER_VILLAGE, OTHER_TOWN, COUNTY]


def test_ancestors_stop_at_a_loop_or_a_missing_parent() -> None:
    looped = {
        "1": Region(code="1", parent_code="2"),
        "2": Region(code="2", parent_code="3"),
        "3": Region(code="3", parent_code="1"),
        "4": Region(code="4", parent_code="gone"),
    }
    assert regions.ancestors(looped, "1") == ["1", "2", "3"]
    assert regions.ancestors(looped, "4") == ["4"]


def test_within_a_scope(db: Database) -> None:
    with db.transaction() as session:
        tree = regions.load_tree(session)
    assert regions.within(tree, GRID, None)
    assert regions.within(tree, GRID, TOWN)
    assert regions.within(tree, TOWN, TOWN)
    assert not regions.within(tree, OTHER_GRID, TOWN)
    assert not regions.within(tree, TOWN, GRID), "an ancestor is not inside its descendant"


def test_an_admin_has_no_scope_and_everyone_else_their_region() -> None:
    assert regions.user_scope(user("admin", TOWN)) is None
    for role in ("operator", "village_head", "viewer"):
        assert regions.user_scope(user(role, VILLAGE)) == VILLAGE


def test_visible_regions_are_the_subtree_and_its_ancestors_in_code_order(db: Database) -> None:
    with db.transaction() as session:
        everything = [r.code for r in regions.visible_regions(session, user("admin", None))]
        village_head = [r.code for r in regions.visible_regions(session, user("village_head", VILLAGE))]
        grid_only = [r.code for r in regions.visible_regions(session, user("viewer", OTHER_GRID))]
    assert everything == sorted(
        [COUNTY, TOWN, OTHER_TOWN, VILLAGE, OTHER_VILLAGE, GRID, GRID_B, EMPTY_GRID, OTHER_GRID]
    )
    assert village_head == [COUNTY, TOWN, VILLAGE, GRID, GRID_B, EMPTY_GRID]
    assert grid_only == [COUNTY, OTHER_TOWN, OTHER_VILLAGE, OTHER_GRID]


# -- resolving targets --


def test_a_region_reaches_every_enabled_speaker_below_it(db: Database) -> None:
    found = resolve(db, [TOWN])
    assert found.reached == ["s1", "s2", "s3"]
    assert (found.region_codes, found.speaker_ids) == ([TOWN], [])
    assert found.targets == [TOWN]
    assert found.wire_targets == [f"region:{TOWN}"]
    assert resolve(db, [COUNTY]).reached == ["s1", "s2", "s3", "s4"]
    assert resolve(db, [GRID]).reached == ["s1", "s2"]


def test_targets_are_trimmed_deduplicated_and_reduced_to_the_fewest_topics(db: Database) -> None:
    found = resolve(db, [f" {GRID} ", TOWN, GRID, "s4", " s1", "s4"])
    assert found.region_codes == [TOWN], "the grid is inside the township"
    assert found.speaker_ids == ["s4"], "s1 is inside the township, s4 is not"
    assert found.reached == ["s1", "s2", "s3", "s4"]
    assert found.targets == [TOWN, "s4"]
    assert found.wire_targets == [f"region:{TOWN}", "speaker:s4"]


def test_lone_speakers_are_reached_as_named_even_when_disabled(db: Database) -> None:
    found = resolve(db, ["s-off", "s1"])
    assert found.reached == ["s-off", "s1"]
    assert found.region_codes == []
    assert sorted(found.speaker_ids) == ["s-off", "s1"]
    assert sorted(found.wire_targets) == ["speaker:s-off", "speaker:s1"]


def test_sibling_regions_are_both_kept(db: Database) -> None:
    found = resolve(db, [GRID_B, GRID])
    assert found.region_codes == [GRID_B, GRID]
    assert found.reached == ["s1", "s2", "s3"]


@pytest.mark.parametrize("targets", [[], None, "100100", [""], ["s1", 5], ["s1", None]])
def test_targets_must_be_a_list_of_names(db: Database, targets: Any) -> None:
    error = refusal(db, targets)
    assert (error.code, error.kind) == ("targets_required", "invalid")
    assert (error.zh, error.en) == ("请至少选择一个播发区域或终端。", "Choose at least one region or speaker.")


def test_at_most_5000_targets(db: Database) -> None:
    error = refusal(db, ["s1"] * 5001)
    assert (error.code, error.en, error.zh) == ("too_many_targets", "Too many targets.", "播发目标过多。")
    assert resolve(db, ["s1"] * 5000).reached == ["s1"]


def test_unknown_targets_are_named(db: Database) -> None:
    unknown = [f"x{n}" for n in range(60)]
    error = refusal(db, ["s1", *unknown])
    assert (error.code, error.kind) == ("unknown_target", "not_found")
    assert error.details["unknown"] == unknown[:50]
    assert error.en == "Unknown region or speaker: x0, x1, x2, x3, x4"
    assert error.zh == "未知的区域或终端：x0、x1、x2、x3、x4"


def test_nothing_outside_the_users_scope_can_be_reached(db: Database) -> None:
    operator = user("operator", TOWN)
    assert resolve(db, [VILLAGE, "s1"], operator).reached == ["s1", "s2", "s3"]
    error = refusal(db, [GRID, OTHER_VILLAGE], operator)
    assert (error.code, error.kind) == ("forbidden", "forbidden")
    assert (error.zh, error.en) == ("您无权向该区域播发：乙村", f"You may not broadcast to {OTHER_VILLAGE}.")
    error = refusal(db, [GRID, "s4"], operator)
    assert (error.code, error.kind) == ("forbidden", "forbidden")
    assert (error.zh, error.en) == ("您无权使用该终端：s4", "You may not use speaker s4.")
    assert refusal(db, [COUNTY], operator).code == "forbidden", "not even the county above"


def test_targets_without_an_enabled_speaker_are_refused(db: Database) -> None:
    error = refusal(db, [EMPTY_GRID])
    assert (error.code, error.kind) == ("no_speakers", "invalid")
    assert (error.zh, error.en) == ("所选区域内没有可用的终端。", "There are no speakers in the chosen targets.")


def test_a_region_whose_parent_is_targeted_too_is_dropped(db: Database) -> None:
    found = resolve(db, [GRID, VILLAGE])
    assert found.region_codes == [VILLAGE]
    assert found.reached == ["s1", "s2", "s3"]


@pytest.mark.parametrize(
    "targets",
    [[TOWN], [COUNTY], [GRID], [GRID_B, GRID], ["s-off", "s1"], [f" {GRID} ", TOWN, "s4"], [VILLAGE, "s4", "s-off"]],
)
def test_the_selection_in_sql_reaches_exactly_the_speakers_the_ids_do(db: Database, targets: list[str]) -> None:
    admin = user("admin", None)
    with db.transaction() as session:
        loaded = regions.resolve_targets(session, targets, admin)
        lazy = regions.resolve_targets(session, targets, admin, ids=False)
        chosen = sorted(session.scalars(select(Speaker.id).where(lazy.speakers())))
    assert lazy.reached == []  # a county's ids are not loaded into Python
    assert chosen == loaded.reached
    assert (lazy.region_codes, lazy.speaker_ids) == (loaded.region_codes, loaded.speaker_ids)


@pytest.mark.parametrize("ids", [True, False])
def test_targets_without_an_enabled_speaker_are_refused_either_way(db: Database, ids: bool) -> None:
    with db.transaction() as session:
        with pytest.raises(BroadcastError) as refused:
            regions.resolve_targets(session, [EMPTY_GRID], user("admin", None), ids=ids)
        assert refused.value.code == "no_speakers"
        assert regions.resolve_targets(session, [GRID_B], user("admin", None), ids=ids).grids == [GRID_B]
