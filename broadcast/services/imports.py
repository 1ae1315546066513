"""Spreadsheet import and export of regions and speakers: every row checked, then all applied or none."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import LEVELS, Region, Speaker, User
from broadcast.services import audit, regions, spreadsheets
from broadcast.services.region_admin import LEVEL_ZH, check_code, check_name, parse_level
from broadcast.services.speaker_admin import (
    check_grid,
    check_id,
    check_pair,
    check_text,
    may_edit,
    parse_coordinate,
    parse_flag,
)

logger = logging.getLogger(__name__)

# (field, Chinese header): headers are matched by either name, in any order.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "regions": (("code", "区划代码"), ("name", "名称"), ("parent_code", "上级代码"), ("level", "层级")),
    "speakers": (
        ("speaker_id", "终端编号"),
        ("name", "名称"),
        ("grid_code", "网格代码"),
        ("latitude", "纬度"),
        ("longitude", "经度"),
        ("address", "地址"),
        ("test_speaker", "演练终端"),
    ),
}
REQUIRED = {"regions": ("code", "name", "level"), "speakers": ("speaker_id", "name", "grid_code")}
COLUMN_ZH = {f: zh for spec in COLUMNS.values() for f, zh in spec}
SPEAKER_FIELDS = ("name", "grid_code", "latitude", "longitude", "address", "test_speaker")


@dataclass
class Problem:
    """One problem with one cell (or row, or header) of the file."""

    row: int
    column: str
    code: str
    zh: str
    en: str

    def to_json(self) -> dict[str, Any]:
        """The problem as the API shows it."""
        return {
            "row": self.row,
            "column": self.column,
            "column_zh": COLUMN_ZH.get(self.column, self.column),
            "code": self.code,
            "zh": self.zh,
            "en": self.en,
        }

    def line(self) -> str:
        """One line of the command line's report, in both languages."""
        column = COLUMN_ZH.get(self.column, self.column)
        return f"第 {self.row} 行 [{column}] {self.zh} / row {self.row} [{self.column}] {self.en}"


@dataclass
class ImportReport:
    """What an import found and did: row counts, per-row problems, and whether it was applied."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    applied: bool = False

    @property
    def ok(self) -> bool:
        """True when the file had no problems."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as the API shows it."""
        return {
            "kind": self.kind,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "dry_run": self.dry_run,
            "applied": self.applied,
            "problems": [p.to_json() for p in self.problems],
        }

    def summary(self) -> str:
        """One line for people: counts in Chinese and English."""
        verb = "将" if self.dry_run or not self.applied else "已"
        return (
            f"{self.rows} 行：{verb}新增 {self.created}，{verb}更新 {self.updated}，未变 {self.unchanged} / "
            f"{self.rows} rows: {self.created} new, {self.updated} updated, {self.unchanged} unchanged"
        )


def _header_map(kind: str, headers: list[str], report: ImportReport) -> dict[str, int]:
    names = {}
    for f, zh in COLUMNS[kind]:
        names[f.lower()] = f
        names[zh] = f
    found: dict[str, int] = {}
    for index, header in enumerate(headers):
        key = names.get(header.strip().lower()) or names.get(header.strip())
        if key is None:
            continue
        if key in found:
            report.problems.append(
                Problem(1, key, "duplicate_column", f"表头重复：{header}", f"Duplicate column: {header}")
            )
        found[key] = index
    for key in REQUIRED[kind]:
        if key not in found:
            zh = COLUMN_ZH[key]
            report.problems.append(
                Problem(1, key, "missing_column", f"缺少列：{zh}（{key}）", f"Missing column: {key} ({zh})")
            )
    return found


def _cells(columns: dict[str, int], cells: list[str]) -> dict[str, str]:
    return {f: (cells[i] if i < len(cells) else "") for f, i in columns.items()}


def _checked(report: ImportReport, row: int, column: str, check: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, check()
    except BroadcastError as exc:
        report.problems.append(Problem(row, exc.details.get("column", column), exc.code, exc.zh, exc.en))
        return False, None


def _duplicate(report: ImportReport, seen: dict[str, int], key: str, row: int, column: str) -> bool:
    if key in seen:
        report.problems.append(
            Problem(
                row,
                column,
                "duplicate_row",
                f"{key} 重复（与第 {seen[key]} 行相同）",
                f"{key} appears twice (also on row {seen[key]})",
            )
        )
        return True
    seen[key] = row
    return False


@dataclass
class _RegionRow:
    row: int
    code: str
    name: str
    level: str
    parent_code: str | None


def import_regions(session: Session, data: bytes, *, user: User | None, dry_run: bool = False) -> ImportReport:
    """Check every row of a regions sheet, then create and update them in this session, or change nothing."""
    if user is not None and user.role != "admin":
        raise forbidden("只有管理员可以导入行政区域。", "Only an admin may import regions.")
    table = spreadsheets.read_table(data)
    report = ImportReport("regions", rows=len(table.rows), dry_run=dry_run)
    columns = _header_map("regions", table.headers, report)
    if report.problems:
        return report
    rows: list[_RegionRow] = []
    seen: dict[str, int] = {}
    for number, cells in table.rows:
        values = _cells(columns, cells)
        code = values["code"].strip()
        ok_name, name = _checked(report, number, "name", lambda v=values: check_name(v["name"]))
        ok_level, level = _checked(report, number, "level", lambda v=values: parse_level(v["level"]))
        if not code:
            report.problems.append(Problem(number, "code", "required", "区划代码不能为空。", "code is required."))
            continue
        if _duplicate(report, seen, code, number, "code") or not (ok_name and ok_level):
            continue
        rows.append(_RegionRow(number, code, name, level, (values.get("parent_code") or "").strip() or None))
    tree = regions.load_tree(session)
    in_file = {r.code: r for r in rows}
    for r in sorted(rows, key=lambda r: LEVELS.index(r.level)):
        parent = in_file.get(r.parent_code or "") or tree.get(r.parent_code or "")
        if not _checked(
            report, r.row, "code", lambda r=r, p=parent: check_code(r.code, r.level, p, parent_code=r.parent_code)
        )[0]:
            continue
        old = tree.get(r.code)
        if old is None:
            report.created += 1
        elif old.level != r.level:
            report.problems.append(
                Problem(
                    r.row,
                    "level",
                    "level_changed",
                    f"{r.code} 已是{LEVEL_ZH[old.level]}，层级不能改变。",
                    f"{r.code} is already a {old.level}; its level cannot change.",
                )
            )
        elif (old.name, old.parent_code) == (r.name, r.parent_code):
            report.unchanged += 1
        else:
            report.updated += 1
    report.problems.sort(key=lambda p: p.row)
    if report.problems or dry_run:
        return report
    for level in LEVELS:
        new = [r for r in rows if r.level == level and r.code not in tree]
        if new:
            session.execute(
                insert(Region),
                [{"code": r.code, "name": r.name, "level": r.level, "parent_code": r.parent_code} for r in new],
            )
    for r in rows:
        old = tree.get(r.code)
        if old is not None and (old.name, old.parent_code) != (r.name, r.parent_code):
            old.name, old.parent_code = r.name, r.parent_code
    if report.created or report.updated:
        audit.record(
            session,
            user.username if user else "cli",
            "import.regions",
            created=report.created,
            updated=report.updated,
            rows=report.rows,
        )
    session.flush()
    report.applied = True
    return report


def _speaker_values(
    report: ImportReport, number: int, values: dict[str, str], tree: dict[str, Region], user: User | None
) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    ok = True
    checks: dict[str, Callable[[], Any]] = {
        "name": lambda: check_text("name", values["name"], required=True),
        "grid_code": lambda: check_grid(tree, values["grid_code"], user),
        "latitude": lambda: parse_coordinate(values["latitude"], "latitude"),
        "longitude": lambda: parse_coordinate(values["longitude"], "longitude"),
        "address": lambda: check_text("address", values["address"]),
        "test_speaker": lambda: parse_flag(values["test_speaker"]),
    }
    for column, check in checks.items():
        if column not in values:
            continue
        good, value = _checked(report, number, column, check)
        ok = ok and good
        out[column] = value
    if ok and ("latitude" in out or "longitude" in out):
        lat, lon = out.get("latitude"), out.get("longitude")
        ok = _checked(report, number, "latitude", lambda: check_pair(lat, lon))[0]
    return out if ok else None


def import_speakers(session: Session, data: bytes, *, user: User | None, dry_run: bool = False) -> ImportReport:
    """Check every row of a speakers sheet, then create and update them in this session, or change nothing."""
    if user is not None and user.role not in ("admin", "operator"):
        raise forbidden("您无权导入终端。", "You may not import speakers.")
    table = spreadsheets.read_table(data)
    report = ImportReport("speakers", rows=len(table.rows), dry_run=dry_run)
    columns = _header_map("speakers", table.headers, report)
    if report.problems:
        return report
    tree = regions.load_tree(session)
    existing = {s.id: s for s in session.scalars(select(Speaker))}
    seen: dict[str, int] = {}
    new: list[dict[str, Any]] = []
    changed: list[tuple[Speaker, dict[str, Any]]] = []
    for number, cells in table.rows:
        values = _cells(columns, cells)
        good, speaker_id = _checked(report, number, "speaker_id", lambda v=values: check_id(v["speaker_id"]))
        fields = _speaker_values(report, number, values, tree, user)
        if not good or _duplicate(report, seen, speaker_id, number, "speaker_id") or fields is None:
            continue
        old = existing.get(speaker_id)
        if old is None:
            new.append({"id": speaker_id, **fields})
            continue
        if old.retired_at is not None:
            report.problems.append(
                Problem(
                    number,
                    "speaker_id",
                    "speaker_retired",
                    f"终端 {speaker_id} 已退役，不能再导入。",
                    f"Speaker {speaker_id} is retired.",
                )
            )
            continue
        if not may_edit(user, tree, old.grid_code):
            report.problems.append(
                Problem(
                    number,
                    "speaker_id",
                    "forbidden",
                    f"您无权修改终端 {speaker_id}。",
                    f"You may not change speaker {speaker_id}.",
                )
            )
            continue
        diff = {k: v for k, v in fields.items() if getattr(old, k) != v}
        if diff:
            changed.append((old, diff))
        else:
            report.unchanged += 1
    report.created, report.updated = len(new), len(changed)
    report.problems.sort(key=lambda p: p.row)
    if report.problems or dry_run:
        return report
    if new:  # every row of one sheet has the same keys (its columns); the model's defaults fill the rest
        session.execute(insert(Speaker), new)
    for speaker, diff in changed:
        for key, value in diff.items():
            setattr(speaker, key, value)
    if new or changed:
        audit.record(
            session,
            user.username if user else "cli",
            "import.speakers",
            created=len(new),
            updated=len(changed),
            rows=report.rows,
            moved=sum(1 for _s, d in changed if "grid_code" in d),
        )
    session.flush()
    report.applied = True
    return report


def run_import(session: Session, kind: str, data: bytes, *, user: User | None, dry_run: bool = False) -> ImportReport:
    """Import a regions or speakers sheet (see import_regions / import_speakers)."""
    if kind == "regions":
        return import_regions(session, data, user=user, dry_run=dry_run)
    if kind == "speakers":
        return import_speakers(session, data, user=user, dry_run=dry_run)
    raise BroadcastError("invalid_kind", f"未知的导入类型：{kind}", f"Unknown import kind: {kind}", kind="not_found")


def _flag_zh(value: bool) -> str:
    return "是" if value else "否"


def export_rows(session: Session, kind: str, user: User | None) -> tuple[list[str], list[list[Any]]]:
    """Headers (in Chinese, as the import reads them) and rows of every region or speaker the user may see."""
    if kind not in COLUMNS:  # checked first: an unknown kind is this error, never a KeyError
        raise BroadcastError(
            "invalid_kind", f"未知的导出类型：{kind}", f"Unknown export kind: {kind}", kind="not_found"
        )
    headers = [zh for _f, zh in COLUMNS[kind]]
    if kind == "regions":
        shown = (
            regions.visible_regions(session, user)
            if user
            else sorted(regions.load_tree(session).values(), key=lambda r: r.code)
        )
        ordered = sorted(shown, key=lambda r: (LEVELS.index(r.level), r.code))
        return headers, [[r.code, r.name, r.parent_code or "", LEVEL_ZH[r.level]] for r in ordered]
    tree = regions.load_tree(session)
    scope = regions.user_scope(user) if user else None
    query = select(Speaker).where(Speaker.retired_at.is_(None)).order_by(Speaker.id)
    rows = [
        [s.id, s.name, s.grid_code, s.latitude, s.longitude, s.address or "", _flag_zh(s.test_speaker)]
        for s in session.scalars(query)
        if regions.within(tree, s.grid_code, scope)
    ]
    return headers, rows


def export_file(session: Session, kind: str, user: User | None, *, fmt: str = "xlsx") -> bytes:
    """The regions or speakers the user may see as an .xlsx or .csv file that imports back unchanged."""
    headers, rows = export_rows(session, kind, user)
    if fmt == "csv":
        return spreadsheets.write_csv(headers, rows)
    return spreadsheets.write_xlsx(headers, rows, title=kind)


def template_file(kind: str, *, fmt: str = "xlsx") -> bytes:
    """An empty sheet with the right headers, to fill in."""
    if kind not in COLUMNS:
        raise BroadcastError(
            "invalid_kind", f"未知的模板类型：{kind}", f"Unknown template kind: {kind}", kind="not_found"
        )
    headers = [zh for _f, zh in COLUMNS[kind]]
    return spreadsheets.write_csv(headers, []) if fmt == "csv" else spreadsheets.write_xlsx(headers, [], title=kind)
