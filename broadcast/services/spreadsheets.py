"""Reading and writing one-sheet tables as .xlsx (openpyxl) or .csv (UTF-8 with or without BOM, or GBK)."""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from broadcast.errors import BroadcastError

logger = logging.getLogger(__name__)

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ROWS = 200_000
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls
FORMULA_START = ("=", "+", "@", "\t", "\r")


@dataclass
class Table:
    """A sheet: its header cells and its data rows, each with its 1-based row number in the file."""

    headers: list[str]
    rows: list[tuple[int, list[str]]]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def refuse_formula(text: str, column: str, column_zh: str) -> str:
    """Refuse text a spreadsheet would run as a formula (=, +, @ first), so an export is safe to open."""
    if text[:1] in FORMULA_START:
        raise BroadcastError(
            "formula_text",
            f"{column_zh}不能以 = + @ 开头：{text[:20]!r}",
            f"{column} may not start with = + @: {text[:20]!r}",
            column=column,
        )
    return text


def decode_csv(data: bytes) -> str:
    """CSV text from UTF-8 (with or without BOM) or GBK/GB18030 bytes, detected in that order."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise BroadcastError(
            "bad_encoding",
            "无法识别 CSV 文件的编码（支持 UTF-8 和 GBK）。",
            "Cannot read the CSV file's encoding (UTF-8 or GBK are supported).",
        ) from None


def _too_many() -> BroadcastError:
    return BroadcastError(
        "too_many_rows", f"表格行数超过上限 {MAX_ROWS}。", f"The sheet has more than {MAX_ROWS} rows.", kind="too_large"
    )


def _table(lines: Iterable[tuple[int, list[str]]]) -> Table:
    headers: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for number, cells in lines:
        if not any(cells):
            continue
        if headers is None:
            headers = cells
            continue
        rows.append((number, cells))
        if len(rows) > MAX_ROWS:
            raise _too_many()
    if headers is None:
        raise BroadcastError("empty_sheet", "表格是空的（没有表头）。", "The sheet is empty (no header row).")
    return Table(headers=headers, rows=rows)


def _read_xlsx(data: bytes) -> Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        logger.info("unreadable workbook: %s", exc)
        raise BroadcastError(
            "bad_workbook", "无法读取该 Excel 文件（需要 .xlsx）。", "Cannot read this Excel file (.xlsx needed)."
        ) from None
    try:
        sheet = book.worksheets[0]

        def lines() -> Iterator[tuple[int, list[str]]]:
            for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_cell(v) for v in row]

        return _table(lines())
    finally:
        book.close()


def _read_csv(data: bytes) -> Table:
    text = decode_csv(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _table((reader.line_num, [_cell(c) for c in row]) for row in reader)
    except csv.Error as exc:
        raise BroadcastError("bad_csv", f"CSV 格式错误：{exc}", f"Malformed CSV: {exc}") from None


def read_table(data: bytes) -> Table:
    """The first sheet of an .xlsx workbook or a CSV file, recognised by content, not by file name."""
    if not data:
        raise BroadcastError("empty_file", "文件是空的。", "The file is empty.")
    if data.startswith(_OLE_MAGIC):
        raise BroadcastError(
            "xls_unsupported",
            "不支持旧版 .xls 文件，请另存为 .xlsx 或 CSV。",
            "Old .xls files are not supported; save as .xlsx or CSV.",
            kind="unsupported",
        )
    if data.startswith(_ZIP_MAGIC):
        return _read_xlsx(data)
    if b"\x00" in data[:4096]:
        raise BroadcastError(
            "not_a_table",
            "文件不是 .xlsx 或 CSV 表格。",
            "The file is neither an .xlsx nor a CSV sheet.",
            kind="unsupported",
        )
    return _read_csv(data)


def write_xlsx(headers: list[str], rows: Iterable[list[Any]], *, title: str = "Sheet1") -> bytes:
    """An .xlsx workbook of one sheet (written in openpyxl's streaming mode)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def write_csv(headers: list[str], rows: Iterable[list[Any]]) -> bytes:
    """A UTF-8 CSV with a BOM (so Excel opens it in the right encoding)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
