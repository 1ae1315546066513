"""The house rules that code review would otherwise have to catch: import direction, docstrings, module size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("media", "speakers", "schedules")


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", list(LIBRARIES))
def test_libraries_never_import_the_server_or_flask(package: str) -> None:
    for path in _modules(package):
        bad = _imports(path) & ({"broadcast", "flask", "werkzeug", *LIBRARIES} - {package})
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", ["broadcast", *LIBRARIES])
def test_public_functions_have_a_docstring(package: str) -> None:
    missing = []
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for path in _modules(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = {
            id(c)
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            for c in ast.walk(n)
            if c is not n
        }
        missing += [
            f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
            for node in ast.walk(tree)
            if isinstance(node, kinds)
            and not node.name.startswith("_")
            and id(node) not in nested
            and ast.get_docstring(node) is None
        ]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("package", ["broadcast", *LIBRARIES])
def test_modules_stay_small(package: str) -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _modules(package)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    ]
    assert not big, big
