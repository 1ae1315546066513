"""Pins of county onboarding: the import of region and speaker sheets (every row checked, all or nothing), export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from broadcast.db import Database
from broadcast.errors import BroadcastError
from broadcast.models import AuditEvent, Region, Speaker, User
from broadcast.services import imports, spreadsheets
from broadcast.services.imports import ImportReport, Problem
from tests.broadcast.conftest import database_with_regions

COUNTY, TOWN, OTHER_TOWN = "421224000000", "421224104000", "421224205000"
VILLAGE, OTHER_VILLAGE = "421224104201", "421224205201"
GRID, GRID_B, OTHER_GRID = "42122410420101", "42122410420102", "42122420520101"
REGION_HEADERS = ["区划代码", "名称", "上级代码", "层级"]
SPEAKER_HEADERS = ["终端编号", "名称", "网格代码", "纬度", "经度", "地址", "演练终端"]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A county with two townships, a village and grid or two in each, three speakers (one retired) and users."""
    database = database_with_regions(
        database_url,
        (
            (COUNTY, "通山县", "county", None),
            (TOWN, "黄沙铺镇", "township", COUNTY),
            (OTHER_TOWN, "大路乡", "township", COUNTY),
            (VILLAGE, "黄沙村", "village", TOWN),
            (OTHER_VILLAGE, "大路村", "village", OTHER_TOWN),
            (GRID, "黄沙一网格", "grid", VILLAGE),
            (GRID_B, "黄沙二网格", "grid", VILLAGE),
            (OTHER_GRID, "大路一网格", "grid", OTHER_VILLAGE),
        ),
    )
    with database.transaction() as session:
        session.add_all(
            [
                Speaker(id="spk-1", name="村口", grid_code=GRID, latitude=29.5, longitude=114.5, address="村口"),
                Speaker(id="spk-far", name="大路", grid_code=OTHER_GRID, test_speaker=True),
                Speaker(id="spk-old", name="旧", grid_code=GRID, retired_at=datetime(2026, 1, 1, tzinfo=UTC)),
            ]
        )
        for name, role, region in (
            ("admin", "admin", None),
            ("operator", "operator", TOWN),
            ("head", "village_head", VILLAGE),
            ("viewer", "viewer", TOWN),
        ):
            session.add(User(username=name, password_hash="x", role=role, region_code=region))
    yield database
    database.dispose()


def sheet(headers: list[str], rows: list[list[Any]]) -> bytes:
    """A UTF-8 CSV file."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def person(session: Any, username: str | None) -> User | None:
    """A stored user by name (None: the command line)."""
    if username is None:
        return None
    return session.scalars(select(User).where(User.username == username)).one()


def run(db: Database, kind: str, data: bytes, user: str | None = None, *, dry_run: bool = False) -> ImportReport:
    """Import a sheet in its own transaction."""
    with db.transaction() as session:
        return imports.run_import(session, kind, data, user=person(session, user), dry_run=dry_run)


def found(report: ImportReport) -> list[tuple[int, str, str]]:
    """The report's problems as (row, column, code), in report order."""
    return [(p.row, p.column, p.code) for p in report.problems]


def snapshot(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]:
    """Every region, every speaker and every audit action, to show that nothing changed."""
    with db.transaction() as session:
        region_rows = session.execute(select(Region.code, Region.name, Region.parent_code).order_by(Region.code))
        speaker_rows = session.execute(
            select(
                Speaker.id, Speaker.name, Speaker.grid_code, Speaker.latitude, Speaker.longitude, Speaker.address,
                Speaker.test_speaker,
            ).order_by(Speaker.id)
        )  # fmt: skip
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))
        return [tuple(r) for r in region_rows], [tuple(r) for r in speaker_rows], list(actions)


def audits(db: Database, action: str) -> list[AuditEvent]:
    """The audit events of one action."""
    with db.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# -- the report --


def test_a_problem_names_its_row_and_column_in_both_languages() -> None:
    """A problem shows the Chinese column name (or the column as given when it has none) and both messages."""
    problem = Problem(4, "grid_code", "unknown_grid", "网格不存在：1", "Unknown grid: 1")
    assert problem.to_json() == {
        "row": 4,
        "column": "grid_code",
        "column_zh": "网格代码",
        "code": "unknown_grid",
        "zh": "网格不存在：1",
        "en": "Unknown grid: 1",
    }
    assert problem.line() == "第 4 行 [网格代码] 网格不存在：1 / row 4 [grid_code] Unknown grid: 1"
    odd = Problem(1, "notes", "x", "中", "en")
    assert odd.to_json()["column_zh"] == "notes"
    assert odd.line() == "第 1 行 [notes] 中 / row 1 [notes] en"


def test_the_report_counts_and_says_whether_it_was_applied() -> None:
    """ok means no problems; the summary says 将 (would) until applied, then 已 (did)."""
    report = ImportReport("regions", rows=5, created=2, updated=1, unchanged=2)
    assert report.ok
    assert (report.dry_run, report.applied, report.problems) == (False, False, [])
    assert report.summary() == "5 行：将新增 2，将更新 1，未变 2 / 5 rows: 2 new, 1 updated, 2 unchanged"
    report.applied = True
    assert report.summary() == "5 行：已新增 2，已更新 1，未变 2 / 5 rows: 2 new, 1 updated, 2 unchanged"
    report.dry_run = True
    assert report.summary().startswith("5 行：将新增 2，将更新 1")
    report.problems.append(Problem(3, "name", "invalid_name", "名", "name"))
    assert not report.ok
    assert report.to_json() == {
        "kind": "regions",
        "rows": 5,
        "created": 2,
        "updated": 1,
        "unchanged": 2,
        "dry_run": True,
        "applied": True,
        "problems": [
            {"row": 3, "column": "name", "column_zh": "名称", "code": "invalid_name", "zh": "名", "en": "name"}
        ],
    }
    assert ImportReport("speakers").to_json() == {
        "kind": "speakers", "rows": 0, "created": 0, "updated": 0, "unchanged": 0, "dry_run": False,
        "applied": False, "problems": [],
    }  # fmt: skip


# -- headers --


def test_headers_match_in_either_language_any_case_and_order(db: Database) -> None:
    """English names in any case with spaces around, or the Chinese ones, in any order; others are ignored."""
    data = sheet([" LEVEL ", "备注", "Name", "code ", "上级代码"], [["网格", "x", "三网格", GRID + "9", VILLAGE]])
    report = run(db, "regions", data, dry_run=True)
    assert (found(report), report.created) == ([], 1)
    data = sheet(["网格代码", "NAME", "Speaker_Id"], [[GRID, "新", "spk-new"]])
    assert (found(run(db, "speakers", data, dry_run=True)), 1) == ([], 1)


def test_missing_required_columns_are_reported_and_no_row_is_read(db: Database) -> None:
    """Each missing required column is one problem on row 1, named in both languages; rows are not checked."""
    report = run(db, "regions", sheet(["上级代码", "备注"], [["", "", "bad"]]))
    assert found(report) == [
        (1, "code", "missing_column"),
        (1, "name", "missing_column"),
        (1, "level", "missing_column"),
    ]
    assert (report.problems[0].zh, report.problems[0].en) == (
        "缺少列：区划代码（code）",
        "Missing column: code (区划代码)",
    )
    assert (report.rows, report.created, report.applied) == (1, 0, False)
    report = run(db, "speakers", sheet(["名称", "纬度"], [["x", "999"]]))
    assert found(report) == [(1, "speaker_id", "missing_column"), (1, "grid_code", "missing_column")]
    assert report.problems[1].en == "Missing column: grid_code (网格代码)"


def test_a_column_given_twice_is_reported(db: Database) -> None:
    """The same field under two headers (English and Chinese) is a duplicate_column problem on row 1."""
    report = run(db, "regions", sheet(["code", "名称", "区划代码", "层级"], [[GRID + "9", "x", GRID + "9", "网格"]]))
    assert found(report) == [(1, "code", "duplicate_column")]
    assert (report.problems[0].zh, report.problems[0].en) == ("表头重复：区划代码", "Duplicate column: 区划代码")
    assert not report.applied


# -- regions --


def test_only_an_admin_or_the_command_line_imports_regions(db: Database) -> None:
    """An operator is refused; the command line (no user) and an admin may import."""
    data = sheet(REGION_HEADERS, [[TOWN, "黄沙铺镇", COUNTY, "乡镇"]])
    with pytest.raises(BroadcastError) as caught:
        run(db, "regions", data, "operator")
    assert (caught.value.code, caught.value.kind) == ("forbidden", "forbidden")
    assert caught.value.en == "Only an admin may import regions."
    assert caught.value.zh == "只有管理员可以导入行政区域。"
    assert run(db, "regions", data).applied
    assert run(db, "regions", data, "admin").applied


def test_new_regions_are_created_parents_first_from_the_file_or_the_database(db: Database) -> None:
    """A sheet may list a village before its new township; grids hang under villages already stored."""
    rows = [
        ["421224300201", "新村", "421224300000", "村"],
        ["421224300000", "新镇", COUNTY, "乡镇"],
        [GRID[:12] + "09", "九网格", f" {VILLAGE} ", "网格"],
        ["42122430020101", "新村一网格", "421224300201", "grid"],
    ]
    before = snapshot(db)
    dry = run(db, "regions", sheet(REGION_HEADERS, rows), dry_run=True)
    assert (dry.ok, dry.rows, dry.created, dry.updated, dry.unchanged, dry.applied) == (True, 4, 4, 0, 0, False)
    assert (dry.kind, dry.dry_run) == ("regions", True)
    assert snapshot(db) == before
    with db.transaction() as session:
        report = imports.import_regions(session, sheet(REGION_HEADERS, rows), user=None)  # applied unless told
    assert (report.ok, report.created, report.applied, report.dry_run, report.kind) == (True, 4, True, False, "regions")
    with db.transaction() as session:
        made = {r.code: (r.name, r.level, r.parent_code) for r in session.scalars(select(Region))}
    assert made["421224300000"] == ("新镇", "township", COUNTY)
    assert made["421224300201"] == ("新村", "village", "421224300000")
    assert made[GRID[:12] + "09"] == ("九网格", "grid", VILLAGE)
    assert made["42122430020101"] == ("新村一网格", "grid", "421224300201")
    (event,) = audits(db, "import.regions")
    assert (event.actor, event.detail) == ("cli", {"created": 4, "updated": 0, "rows": 4})


def test_a_changed_name_is_an_update_and_the_same_row_is_unchanged(db: Database) -> None:
    """Reimporting a region changes only its name; an identical row is counted unchanged and not audited."""
    same = [[COUNTY, "通山县", "", "县"], [TOWN, "黄沙铺镇", COUNTY, "乡镇"]]
    report = run(db, "regions", sheet(REGION_HEADERS, same), "admin")
    assert (report.created, report.updated, report.unchanged, report.applied) == (0, 0, 2, True)
    assert audits(db, "import.regions") == []
    renamed = [
        [COUNTY, "通山县", "", "县"],
        [TOWN, "黄沙铺镇人民政府", COUNTY, "乡镇"],
        [VILLAGE, "黄沙村", TOWN, "村"],
    ]
    report = run(db, "regions", sheet(REGION_HEADERS, renamed), "admin")
    assert (report.created, report.updated, report.unchanged) == (0, 1, 2)
    grids = [
        [GRID, "一网格", VILLAGE, "网格"],
        [GRID_B, "二网格", VILLAGE, "网格"],
        [OTHER_GRID, "三", OTHER_VILLAGE, "网格"],
    ]
    assert run(db, "regions", sheet(REGION_HEADERS, grids), dry_run=True).updated == 3
    with db.transaction() as session:
        town = session.get(Region, TOWN)
        assert town is not None
        assert (town.name, town.parent_code, town.level) == ("黄沙铺镇人民政府", COUNTY, "township")
    (event,) = audits(db, "import.regions")
    assert (event.actor, event.detail) == ("admin", {"created": 0, "updated": 1, "rows": 3})


def test_a_region_may_not_change_its_level(db: Database) -> None:
    """A stored code given another level is a level_changed problem and nothing changes."""
    before = snapshot(db)
    report = run(db, "regions", sheet(REGION_HEADERS, [[VILLAGE, "黄沙村", COUNTY, "乡镇"]]))
    assert found(report) == [(2, "level", "level_changed")]
    assert report.problems[0].zh == f"{VILLAGE} 已是村/社区，层级不能改变。"
    assert report.problems[0].en == f"{VILLAGE} is already a village; its level cannot change."
    assert not report.applied
    assert snapshot(db) == before


def test_every_bad_region_row_is_reported_in_row_order_and_nothing_is_written(db: Database) -> None:
    """Empty code, bad name, bad level, a code twice and a code outside its parent: all reported, by row."""
    rows = [
        ["421224400201", "孤村", "421224400000", "村"],  # row 2: its township does not exist
        ["", "", COUNTY, "州"],  # row 3: no code, no name, unknown level
        ["421224300000", "新镇", COUNTY, "乡镇"],  # row 4: fine
        ["421224300000", "又一个", COUNTY, "乡镇"],  # row 5: the same code again
        ["421224300001", "x" * 101, COUNTY, "乡镇"],  # row 6: name too long (its code is not checked)
        ["421224104299", "错码村", OTHER_TOWN, "村"],  # row 7: not under its township's code
        ["421224300002", "坏层级", COUNTY, "省"],  # row 8: unknown level
        ["421224300000", "第三次", COUNTY, "乡镇"],  # row 9: the same code a third time
    ]
    before = snapshot(db)
    report = run(db, "regions", sheet(REGION_HEADERS, rows), "admin")
    assert found(report) == [
        (2, "parent_code", "unknown_parent"),
        (3, "name", "invalid_name"),
        (3, "level", "invalid_level"),
        (3, "code", "required"),
        (5, "code", "duplicate_row"),
        (6, "name", "invalid_name"),
        (7, "code", "code_outside_parent"),
        (8, "level", "invalid_level"),
        (9, "code", "duplicate_row"),
    ]
    assert report.problems[0].en == "Unknown parent region: 421224400000"
    required = report.problems[3]
    assert (required.zh, required.en) == ("区划代码不能为空。", "code is required.")
    twice = report.problems[4]
    assert (twice.zh, twice.en) == ("421224300000 重复（与第 4 行相同）", "421224300000 appears twice (also on row 4)")
    assert report.problems[8].en == "421224300000 appears twice (also on row 4)"
    assert (report.rows, report.created, report.applied) == (8, 1, False)
    assert snapshot(db) == before


def test_a_county_may_not_name_a_parent_even_an_unknown_one(db: Database) -> None:
    """A county row with any parent code is an invalid_parent problem, whether that code exists or not."""
    rows = [["421225000000", "崇阳县", "999999999999", "县"], ["421226000000", "赤壁市", COUNTY, "县"]]
    report = run(db, "regions", sheet(REGION_HEADERS, rows))
    assert found(report) == [(2, "parent_code", "invalid_parent"), (3, "parent_code", "invalid_parent")]
    assert report.problems[0].en == "A county has no parent region."


# -- speakers --


def test_only_admins_operators_and_the_command_line_import_speakers(db: Database) -> None:
    """Village heads and viewers are refused; an operator imports into their own township."""
    data = sheet(SPEAKER_HEADERS, [["spk-2", "二号", GRID, "", "", "", ""]])
    for role in ("head", "viewer"):
        with pytest.raises(BroadcastError) as caught:
            run(db, "speakers", data, role)
        assert (caught.value.code, caught.value.en) == ("forbidden", "You may not import speakers.")
        assert caught.value.zh == "您无权导入终端。"
    assert run(db, "speakers", data, "operator").created == 1
    assert run(db, "speakers", sheet(SPEAKER_HEADERS, [["spk-3", "三号", GRID, "", "", "", ""]])).created == 1


def test_new_speakers_are_created_with_every_field(db: Database) -> None:
    """Each new row becomes a speaker with its name, grid, coordinates, address and test flag; one audit event."""
    rows = [
        ["spk-2", "二号", GRID_B, "29.25", "114.75", "桥头", "是"],
        ["spk-3", "三号", GRID, "", "", "", "否"],
        ["spk-4", "四号", GRID],  # a short row: the missing cells are empty
    ]
    before = snapshot(db)
    dry = run(db, "speakers", sheet(SPEAKER_HEADERS, rows), "admin", dry_run=True)
    assert (dry.ok, dry.rows, dry.created, dry.updated, dry.unchanged, dry.applied) == (True, 3, 3, 0, 0, False)
    assert (dry.kind, dry.dry_run) == ("speakers", True)
    assert snapshot(db) == before
    with db.transaction() as session:  # applied unless told
        report = imports.import_speakers(session, sheet(SPEAKER_HEADERS, rows), user=person(session, "admin"))
    assert (report.ok, report.created, report.updated, report.applied) == (True, 3, 0, True)
    assert (report.kind, report.dry_run) == ("speakers", False)
    new = [s for s in snapshot(db)[1] if s[0] in ("spk-2", "spk-3", "spk-4")]
    assert new == [
        ("spk-2", "二号", GRID_B, 29.25, 114.75, "桥头", True),
        ("spk-3", "三号", GRID, None, None, None, False),
        ("spk-4", "四号", GRID, None, None, None, False),
    ]
    (event,) = audits(db, "import.speakers")
    assert (event.actor, event.detail) == ("admin", {"created": 3, "updated": 0, "rows": 3, "moved": 0})


def test_a_sheet_of_only_the_required_columns_creates_speakers_with_defaults(db: Database) -> None:
    """Without coordinate, address and flag columns a new speaker has none and is not a test speaker."""
    report = run(db, "speakers", sheet(["终端编号", "名称", "网格代码"], [["spk-9", "九号", GRID]]))
    assert (report.ok, report.created) == (True, 1)
    assert [s for s in snapshot(db)[1] if s[0] == "spk-9"] == [("spk-9", "九号", GRID, None, None, None, False)]
    (event,) = audits(db, "import.speakers")
    assert event.actor == "cli"


def test_columns_after_a_missing_one_are_still_read(db: Database) -> None:
    """A sheet without coordinate columns still sets the address and the test flag."""
    headers = ["终端编号", "名称", "网格代码", "地址", "演练终端"]
    report = run(db, "speakers", sheet(headers, [["spk-8", "八号", GRID, "桥头", "是"]]))
    assert (report.ok, report.created) == (True, 1)
    assert [s for s in snapshot(db)[1] if s[0] == "spk-8"] == [("spk-8", "八号", GRID, None, None, "桥头", True)]


def test_a_sheet_with_one_coordinate_column_needs_the_other(db: Database) -> None:
    """A latitude (or longitude) column alone cannot place a speaker: the pair is incomplete."""
    base = ["终端编号", "名称", "网格代码"]
    only_latitude = run(db, "speakers", sheet([*base, "纬度"], [["spk-8", "八号", GRID, "29.5"]]))
    assert found(only_latitude) == [(2, "longitude", "coordinate_pair")]
    only_longitude = run(db, "speakers", sheet([*base, "经度"], [["spk-8", "八号", GRID, "114"]]))
    assert found(only_longitude) == [(2, "latitude", "coordinate_pair")]
    empty = run(db, "speakers", sheet([*base, "经度"], [["spk-8", "八号", GRID, ""]]))
    assert (empty.ok, empty.created) == (True, 1)


def test_a_known_speaker_is_updated_in_the_changed_fields_only(db: Database) -> None:
    """Reimported speakers: an identical row is unchanged; a changed one updates what differs; a move is counted."""
    rows = [
        ["spk-1", "村口", GRID, "29.5", "114.5", "村口", "否"],
        ["spk-far", "大路口", OTHER_GRID, "", "", "", "是"],
    ]
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    rows = [["spk-1", "村口", GRID_B, "29.5", "114.5", "", "是"], ["spk-far", "大路口", OTHER_GRID, "", "", "", "是"]]
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    speakers = {s[0]: s for s in snapshot(db)[1]}
    assert speakers["spk-1"] == ("spk-1", "村口", GRID_B, 29.5, 114.5, None, True)
    assert speakers["spk-far"] == ("spk-far", "大路口", OTHER_GRID, None, None, None, True)
    first, second = audits(db, "import.speakers")
    assert first.detail == {"created": 0, "updated": 1, "rows": 2, "moved": 0}
    assert second.detail == {"created": 0, "updated": 1, "rows": 2, "moved": 1}
    again = run(db, "speakers", sheet(SPEAKER_HEADERS, rows))
    assert (again.created, again.updated, again.unchanged, again.applied) == (0, 0, 2, True)
    assert len(audits(db, "import.speakers")) == 2  # nothing changed: no audit event


def test_only_the_columns_in_the_sheet_are_compared_and_changed(db: Database) -> None:
    """A sheet without coordinates leaves a speaker's coordinates as they are."""
    report = run(db, "speakers", sheet(["终端编号", "名称", "网格代码"], [["spk-1", "新名", GRID]]))
    assert (report.updated, report.unchanged) == (1, 0)
    assert [s for s in snapshot(db)[1] if s[0] == "spk-1"] == [("spk-1", "新名", GRID, 29.5, 114.5, "村口", False)]


def test_a_retired_speaker_cannot_be_imported_again(db: Database) -> None:
    """A retired id is a speaker_retired problem; the rows after it are still checked."""
    rows = [["spk-old", "旧", GRID, "", "", "", ""], ["spk-7", "七号", GRID, "", "", "", ""], ["spk-8", "", GRID]]
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows))
    assert found(report) == [(2, "speaker_id", "speaker_retired"), (4, "name", "required")]
    assert report.created == 1
    assert (report.problems[0].zh, report.problems[0].en) == (
        "终端 spk-old 已退役，不能再导入。",
        "Speaker spk-old is retired.",
    )
    assert not report.applied


def test_an_operator_may_not_take_over_or_place_speakers_outside_their_township(db: Database) -> None:
    """Moving another township's speaker into one's own grid, or placing one in another's grid, is refused."""
    own = run(db, "speakers", sheet(SPEAKER_HEADERS, [["spk-1", "村口新", GRID_B, "", "", "", ""]]), "operator")
    assert (found(own), own.updated, own.applied) == ([], 1, True)
    before = snapshot(db)
    rows = [["spk-far", "大路", GRID, "", "", "", "是"], ["spk-5", "五号", OTHER_GRID, "", "", "", ""]]
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows), "operator")
    assert found(report) == [(2, "speaker_id", "forbidden"), (3, "grid_code", "forbidden")]
    assert (report.problems[0].zh, report.problems[0].en) == (
        "您无权修改终端 spk-far。",
        "You may not change speaker spk-far.",
    )
    assert snapshot(db) == before
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows), "admin")
    assert (report.ok, report.created, report.updated) == (True, 1, 1)


def test_every_bad_speaker_row_is_reported_in_row_order_and_nothing_is_written(db: Database) -> None:
    """Bad ids, names, grids, coordinates, flags and repeated ids are each one problem, sorted by row."""
    rows = [
        ["spk-a", "好", GRID, "29.5", "114.5", "", "否"],  # row 2: fine
        ["bad id!", "", "999", "91", "", "=1+1", "也许"],  # row 3: everything wrong
        ["spk-b", "只有纬度", GRID, "29.5", "", "", ""],  # row 4: latitude without longitude
        ["spk-c", "只有经度", GRID, "", "114.5", "", ""],  # row 5: longitude without latitude
        ["spk-a", "又是a", GRID, "", "", "", ""],  # row 6: the same id again
        ["spk-d", "纬度错", GRID, "北纬", "", "", ""],  # row 7: unreadable latitude, no pair check
        ["spk-e", "村里", VILLAGE, "", "", "", ""],  # row 8: a village is not a grid
        ["spk-f", "经度错", GRID, "29.5", "181", "", ""],  # row 9: longitude beyond 180
    ]
    before = snapshot(db)
    report = run(db, "speakers", sheet(SPEAKER_HEADERS, rows), "admin")
    assert found(report) == [
        (3, "speaker_id", "invalid_speaker_id"),
        (3, "name", "required"),
        (3, "grid_code", "unknown_grid"),
        (3, "latitude", "invalid_coordinate"),
        (3, "address", "formula_text"),
        (3, "test_speaker", "invalid_flag"),
        (4, "longitude", "coordinate_pair"),
        (5, "latitude", "coordinate_pair"),
        (6, "speaker_id", "duplicate_row"),
        (7, "latitude", "invalid_coordinate"),
        (8, "grid_code", "not_a_grid"),
        (9, "longitude", "invalid_coordinate"),
    ]
    assert report.problems[8].en == "spk-a appears twice (also on row 2)"
    assert report.problems[11].en == "Invalid longitude: '181' (decimal degrees, -180 to 180)"
    assert report.problems[11].zh == "经度无效：'181'（十进制度数，-180 到 180）"
    assert (report.rows, report.created, report.applied) == (8, 1, False)
    assert snapshot(db) == before


def test_an_unknown_kind_is_refused(db: Database) -> None:
    """Only regions and speakers can be imported, exported or given as a template."""
    with db.transaction() as session:
        with pytest.raises(BroadcastError) as caught:
            imports.run_import(session, "users", b"a\n", user=None)
        assert (caught.value.code, caught.value.kind) == ("invalid_kind", "not_found")
        assert (caught.value.zh, caught.value.en) == ("未知的导入类型：users", "Unknown import kind: users")
        with pytest.raises(BroadcastError) as caught:
            imports.export_rows(session, "users", None)
        assert (caught.value.code, caught.value.kind) == ("invalid_kind", "not_found")
        assert (caught.value.zh, caught.value.en) == ("未知的导出类型：users", "Unknown export kind: users")
    with pytest.raises(BroadcastError) as caught:
        imports.template_file("users")
    assert (caught.value.code, caught.value.kind) == ("invalid_kind", "not_found")
    assert (caught.value.zh, caught.value.en) == ("未知的模板类型：users", "Unknown template kind: users")


# -- export and templates --


def test_regions_export_by_level_then_code_within_the_users_view(db: Database) -> None:
    """Every region for an admin or the command line; an operator sees their township's tree and its county."""
    everything = [
        [COUNTY, "通山县", "", "县"],
        [TOWN, "黄沙铺镇", COUNTY, "乡镇"],
        [OTHER_TOWN, "大路乡", COUNTY, "乡镇"],
        [VILLAGE, "黄沙村", TOWN, "村/社区"],
        [OTHER_VILLAGE, "大路村", OTHER_TOWN, "村/社区"],
        [GRID, "黄沙一网格", VILLAGE, "网格"],
        [GRID_B, "黄沙二网格", VILLAGE, "网格"],
        [OTHER_GRID, "大路一网格", OTHER_VILLAGE, "网格"],
    ]
    with db.transaction() as session:
        assert imports.export_rows(session, "regions", None) == (REGION_HEADERS, everything)
        assert imports.export_rows(session, "regions", person(session, "admin")) == (REGION_HEADERS, everything)
        _headers, rows = imports.export_rows(session, "regions", person(session, "operator"))
    assert rows == [everything[i] for i in (0, 1, 3, 5, 6)]


def test_speakers_export_in_id_order_without_retired_ones_within_the_users_region(db: Database) -> None:
    """Speakers by id, retired ones left out, an operator's own township only; 是/否 for the test flag."""
    everything = [
        ["spk-1", "村口", GRID, 29.5, 114.5, "村口", "否"],
        ["spk-far", "大路", OTHER_GRID, None, None, "", "是"],
    ]
    with db.transaction() as session:
        session.add(Speaker(id="spk-0", name="零", grid_code=GRID_B))  # stored last, listed first
        session.flush()
        zero = ["spk-0", "零", GRID_B, None, None, "", "否"]
        assert imports.export_rows(session, "speakers", None) == (SPEAKER_HEADERS, [zero, *everything])
        session.delete(session.get(Speaker, "spk-0"))
        session.flush()
        assert imports.export_rows(session, "speakers", None) == (SPEAKER_HEADERS, everything)
        assert imports.export_rows(session, "speakers", person(session, "admin"))[1] == everything
        assert imports.export_rows(session, "speakers", person(session, "operator"))[1] == everything[:1]


def test_an_export_is_an_xlsx_or_csv_file_that_imports_back_unchanged(db: Database) -> None:
    """The xlsx sheet is named after its kind; the CSV has a BOM; both read back with the Chinese headers."""
    with db.transaction() as session:
        files = {fmt: imports.export_file(session, "speakers", None, fmt=fmt) for fmt in ("xlsx", "csv")}
        default = imports.export_file(session, "regions", None)
    assert files["csv"].startswith(b"\xef\xbb\xbf")
    assert default.startswith(b"PK")
    assert load_workbook(io.BytesIO(default), read_only=True).sheetnames == ["regions"]
    assert load_workbook(io.BytesIO(files["xlsx"]), read_only=True).sheetnames == ["speakers"]
    for data in files.values():
        table = spreadsheets.read_table(data)
        assert table.headers == SPEAKER_HEADERS
        assert [cells[0] for _n, cells in table.rows] == ["spk-1", "spk-far"]
        report = run(db, "speakers", data)
        assert (report.ok, report.created, report.updated, report.unchanged) == (True, 0, 0, 2)
    with db.transaction() as session:  # applied unless told
        again = imports.run_import(session, "regions", default, user=None)
    assert (again.unchanged, again.applied) == (8, True)
    with db.transaction() as session:
        mine = imports.export_file(session, "speakers", person(session, "operator"), fmt="csv")
    assert [cells[0] for _n, cells in spreadsheets.read_table(mine).rows] == ["spk-1"]


def test_a_template_is_an_empty_sheet_with_the_chinese_headers(db: Database) -> None:
    """The template holds only the header row, as .xlsx (named after its kind) or .csv."""
    as_csv = imports.template_file("speakers", fmt="csv")
    assert as_csv.decode("utf-8-sig").splitlines() == [",".join(SPEAKER_HEADERS)]
    as_xlsx = imports.template_file("regions")
    book = load_workbook(io.BytesIO(as_xlsx), read_only=True)
    assert book.sheetnames == ["regions"]
    assert [list(r) for r in book.worksheets[0].iter_rows(values_only=True)] == [REGION_HEADERS]
