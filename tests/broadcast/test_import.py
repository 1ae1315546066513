"""Spreadsheet import and export of regions and speakers: whole files or nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from broadcast.models import AuditEvent, Region, Speaker
from broadcast.services import accounts, imports
from tests.broadcast.conftest import auth
from tests.conftest import free_port, make_app

COUNTY = "421224000000"
REGION_HEADERS = ["区划代码", "名称", "上级代码", "层级"]
SPEAKER_HEADERS = ["终端编号", "名称", "网格代码", "纬度", "经度", "地址", "演练终端"]


def county_rows(
    townships: int = 2, villages: int = 6, grids: int = 12, speakers: int = 40
) -> tuple[list[list[Any]], list[list[Any]]]:
    """A generated county modelled on 通山县: region rows and speaker rows, spread evenly, in sheet order."""
    regions: list[list[Any]] = [[COUNTY, "通山县", "", "县"]]
    town_codes = [f"421224{100 + t:03d}000" for t in range(1, townships + 1)]
    regions += [[c, f"第{i + 1}乡镇", COUNTY, "乡镇"] for i, c in enumerate(town_codes)]
    village_codes = [f"{town_codes[v % townships][:9]}{200 + v // townships + 1:03d}" for v in range(villages)]
    regions += [[c, f"村{c[-6:]}", town_codes[v % townships], "村"] for v, c in enumerate(village_codes)]
    grid_codes = [f"{village_codes[g % villages]}{g // villages + 1:02d}" for g in range(grids)]
    regions += [[c, f"网格{c[-8:]}", village_codes[g % villages], "网格"] for g, c in enumerate(grid_codes)]
    rows: list[list[Any]] = []
    for n in range(speakers):
        grid = grid_codes[n % grids]
        lat, lon = 29.45 + (n % 97) * 0.004, 114.35 + (n % 89) * 0.005
        rows.append(
            [
                f"spk-{n:05d}",
                f"音柱{n}",
                grid,
                round(lat, 5),
                round(lon, 5),
                f"{grid} 村口",
                "是" if n % 50 == 0 else "否",
            ]
        )
    return regions, rows


def xlsx(headers: list[str], rows: list[list[Any]]) -> bytes:
    """An .xlsx workbook as an installer would send it."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(headers: list[str], rows: list[list[Any]], encoding: str) -> bytes:
    """A CSV file in the given encoding (utf-8-sig writes the BOM)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    """The app on each database, with no broker reachable."""
    application = make_app(tmp_path / "instance", database_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    yield application
    application.extensions["platform"].close()


def _counts(app: Any) -> tuple[int, int, int]:
    with app.extensions["platform"].db.transaction() as session:
        return (
            session.scalar(select(func.count()).select_from(Region)) or 0,
            session.scalar(select(func.count()).select_from(Speaker)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def _import(app: Any, kind: str, data: bytes, *, dry_run: bool = False) -> imports.ImportReport:
    with app.extensions["platform"].db.transaction() as session:
        return imports.run_import(session, kind, data, user=None, dry_run=dry_run)


def _admin_token(app: Any) -> str:
    with app.extensions["platform"].db.transaction() as session:
        return accounts.create_token(session, accounts.find_user(session, "admin"))


def test_county_workbook_imports_and_reimporting_it_changes_nothing(app: Any) -> None:
    region_rows, speaker_rows = county_rows()
    empty = _counts(app)
    dry = _import(app, "regions", xlsx(REGION_HEADERS, region_rows), dry_run=True)
    assert (dry.ok, dry.created, dry.applied) == (True, len(region_rows), False)
    assert _counts(app) == empty  # a dry run writes nothing
    report = _import(app, "regions", xlsx(REGION_HEADERS, region_rows))
    assert report.ok, [p.line() for p in report.problems]
    assert (report.created, report.applied) == (len(region_rows), True)
    report = _import(app, "speakers", xlsx(SPEAKER_HEADERS, speaker_rows))
    assert report.ok, [p.line() for p in report.problems]
    assert report.created == len(speaker_rows)
    after = _counts(app)
    assert after[:2] == (len(region_rows), len(speaker_rows))

    client = app.test_client()
    body = client.get("/api/v1/speakers?per_page=1000", headers=auth(_admin_token(app))).get_json()
    shown = {s["id"]: s for s in body["items"]}
    assert shown["spk-00003"]["latitude"] == speaker_rows[3][3]
    assert shown["spk-00003"]["longitude"] == speaker_rows[3][4]
    assert (shown["spk-00000"]["test_speaker"], shown["spk-00001"]["test_speaker"]) == (True, False)
    assert shown["spk-00001"]["address"] == speaker_rows[1][5]

    before = _counts(app)
    again = _import(app, "regions", xlsx(REGION_HEADERS, region_rows))
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(region_rows))
    again = _import(app, "speakers", xlsx(SPEAKER_HEADERS, speaker_rows))
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(speaker_rows))
    assert _counts(app) == before  # not even an audit row

    speaker_rows[5][1] = "改名的音柱"
    speaker_rows[6][2] = speaker_rows[7][2]  # moved to another grid
    changed = _import(app, "speakers", xlsx(SPEAKER_HEADERS, speaker_rows))
    assert (changed.created, changed.updated) == (0, 2)
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Speaker, "spk-00005").name == "改名的音柱"
        assert session.get(Speaker, "spk-00006").grid_code == speaker_rows[7][2]


def test_a_file_with_errors_changes_nothing_and_names_every_row(app: Any) -> None:
    region_rows, _speakers = county_rows()
    assert _import(app, "regions", xlsx(REGION_HEADERS, region_rows)).applied  # the good path works first
    before = _counts(app)
    bad_regions = [
        ["421224900000", "新乡镇", COUNTY, "乡镇"],  # fine on its own
        [region_rows[1][0], "重复的乡镇", COUNTY, "乡镇"],  # a code already in this file? no: in the database
        ["421224900000", "又一个", COUNTY, "乡镇"],  # duplicate code within the file
        ["421224777201", "孤村", "421224777000", "村"],  # under an unknown township
        ["421224101299", "错码村", "421224102000", "村"],  # code not under its township
        ["42122410120101", "网格", region_rows[3][0], "乡镇"],  # a grid code called a township
    ]
    report = _import(app, "regions", xlsx(REGION_HEADERS, bad_regions))
    assert not report.applied
    problems = {(p.row, p.column, p.code) for p in report.problems}
    assert (4, "code", "duplicate_row") in problems
    assert (5, "parent_code", "unknown_parent") in problems
    assert (6, "code", "code_outside_parent") in problems
    assert any(p.row == 7 for p in report.problems)
    assert all(p.zh and p.en for p in report.problems)
    assert _counts(app) == before

    bad_speakers = [
        ["spk-new-1", "好的音柱", region_rows[-1][0], 29.5, 114.5, "", "否"],
        ["spk-new-2", "网格不存在", "42122499999901", 29.5, 114.5, "", "否"],
        ["spk-new-3", "纬度错", region_rows[-1][0], 129.5, 114.5, "", "否"],
        ["spk-new-4", "经度错", region_rows[-1][0], 29.5, "东经", "", "否"],
        ["spk-new-5", "只有纬度", region_rows[-1][0], 29.5, "", "", "否"],
        ["spk-new-1", "重复编号", region_rows[-1][0], 29.5, 114.5, "", "否"],
        ["bad id!", "编号错", region_rows[-1][0], "", "", "", "也许"],
    ]
    report = _import(app, "speakers", xlsx(SPEAKER_HEADERS, bad_speakers))
    problems = {(p.row, p.column, p.code) for p in report.problems}
    assert (3, "grid_code", "unknown_grid") in problems
    assert (4, "latitude", "invalid_coordinate") in problems
    assert (5, "longitude", "invalid_coordinate") in problems
    assert (6, "longitude", "coordinate_pair") in problems
    assert (7, "speaker_id", "duplicate_row") in problems
    assert (8, "speaker_id", "invalid_speaker_id") in problems
    assert (8, "test_speaker", "invalid_flag") in problems
    assert not any(p.row == 2 for p in report.problems)
    assert "第 3 行 [网格代码]" in next(p.line() for p in report.problems if p.row == 3)
    assert _counts(app) == before


def test_missing_columns_are_reported_before_any_row(app: Any) -> None:
    report = _import(app, "regions", xlsx(["区划代码", "名称"], [[COUNTY, "通山县"]]))
    assert [(p.row, p.column, p.code) for p in report.problems] == [(1, "level", "missing_column")]
    assert not report.applied


def test_csv_in_gbk_and_utf8_with_bom_headers_in_either_language_any_order(app: Any) -> None:
    region_rows, speaker_rows = county_rows(townships=1, villages=2, grids=2, speakers=4)
    shuffled = [[r[3], r[1], r[0], r[2]] for r in region_rows]
    gbk = csv_bytes(["层级", "名称", "区划代码", "上级代码"], shuffled, "gbk")
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    report = _import(app, "regions", gbk)
    assert (report.ok, report.created) == (True, len(region_rows)), [p.line() for p in report.problems]
    with app.extensions["platform"].db.transaction() as session:
        assert session.get(Region, COUNTY).name == "通山县"
    english = ["name", "speaker_id", "grid_code", "longitude", "latitude", "test_speaker", "address"]
    moved = [[r[1], r[0], r[2], r[4], r[3], "true" if i == 0 else "0", r[5]] for i, r in enumerate(speaker_rows)]
    bom = csv_bytes(english, moved, "utf-8-sig")
    assert bom.startswith(b"\xef\xbb\xbf")
    report = _import(app, "speakers", bom)
    assert (report.ok, report.created) == (True, len(speaker_rows)), [p.line() for p in report.problems]
    with app.extensions["platform"].db.transaction() as session:
        first = session.get(Speaker, "spk-00000")
        assert (first.name, first.latitude, first.test_speaker) == ("音柱0", speaker_rows[0][3], True)


def test_export_gives_back_the_same_columns_and_imports_unchanged(app: Any) -> None:
    region_rows, speaker_rows = county_rows(townships=1, villages=2, grids=4, speakers=9)
    _import(app, "regions", xlsx(REGION_HEADERS, region_rows))
    _import(app, "speakers", xlsx(SPEAKER_HEADERS, speaker_rows))
    with app.extensions["platform"].db.transaction() as session:
        files = {
            (kind, fmt): imports.export_file(session, kind, None, fmt=fmt)
            for kind in ("regions", "speakers")
            for fmt in ("xlsx", "csv")
        }
    before = _counts(app)
    for (kind, _fmt), data in files.items():
        report = _import(app, kind, data)
        rows = len(region_rows) if kind == "regions" else len(speaker_rows)
        assert (report.created, report.updated, report.unchanged) == (0, 0, rows), [p.line() for p in report.problems]
    assert _counts(app) == before
    headers = files[("speakers", "csv")].decode("utf-8-sig").splitlines()[0].split(",")
    assert headers == SPEAKER_HEADERS
    template = imports.template_file("regions")
    assert imports.spreadsheets.read_table(template).headers == REGION_HEADERS


def test_text_a_spreadsheet_would_run_as_a_formula_is_refused(app: Any) -> None:
    region_rows, _speakers = county_rows(townships=1, villages=1, grids=1, speakers=0)
    assert _import(app, "regions", xlsx(REGION_HEADERS, region_rows)).applied
    rows = [["spk-f-1", "好名字", region_rows[-1][0], "", "", "村口", "否"]]
    rows.append(["spk-f-2", "@SUM(1+1)", region_rows[-1][0], "", "", '=HYPERLINK("http://x","y")', "否"])
    report = _import(app, "speakers", csv_bytes(SPEAKER_HEADERS, rows, "utf-8"))
    assert {(p.row, p.column, p.code) for p in report.problems} == {
        (3, "name", "formula_text"),
        (3, "address", "formula_text"),
    }
    assert not report.applied
