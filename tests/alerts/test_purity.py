"""The alert rules stay pure: no Flask, no SQLAlchemy, no database or web import in broadcast/alerts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "broadcast" / "alerts"
ALLOWED_BROADCAST = {"broadcast.alerts", "broadcast.errors"}


def test_alert_modules_import_neither_flask_nor_sqlalchemy() -> None:
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                inside = any(name == a or name.startswith(a + ".") for a in ALLOWED_BROADCAST)
                if top in ("flask", "werkzeug", "sqlalchemy") or (top == "broadcast" and not inside):
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad
