"""Inserting many rows at once: COPY on PostgreSQL, one executemany on SQLite (a county's deliveries, a plan)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, insert
from sqlalchemy.orm import Session

from broadcast.models.base import Base


def _filled(table: Any, rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows with every column's Python default filled in, once for the lot (a default runs once per row)."""
    given = set(rows[0])
    extra: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in given and column.default is not None and not column.primary_key:
            default = column.default
            extra[column.name] = default.arg(None) if default.is_callable else default.arg
    return [*given, *extra], [row | extra for row in rows]


def insert_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert many rows (all with the same keys) in one statement: COPY on PostgreSQL, executemany on SQLite.

    Through psycopg an executemany is one statement per row, and SQLAlchemy's pages of 1,000 rows per INSERT
    cost more to build than to run; COPY sends the lot as one stream, in this transaction.
    """
    if not rows:
        return
    table: Any = model.__table__
    columns, rows = _filled(table, rows)
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), rows)
        return
    as_json = {c for c in columns if isinstance(table.c[c].type, JSON)}
    raw = connection.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c]) if c in as_json else row[c] for c in columns])
