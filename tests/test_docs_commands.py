"""Every `broadcast` / `speaker-agent` command in the README and the docs' shell blocks exists, with its options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from broadcast.cli import main as broadcast_main
from speakers.cli import main as agent_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS: dict[str, click.Command] = {"broadcast": broadcast_main, "speaker-agent": agent_main}
FENCE = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text(encoding="utf-8")):
            for raw in block.replace("\\\n", " ").splitlines():
                line = raw.split(" #")[0].strip()
                for part in re.split(r"&&|\|\||;|\|", line):
                    try:
                        words = shlex.split(part, comments=True)
                    except ValueError:
                        continue
                    words = [w for w in words if "=" not in w or w.startswith("-")]  # drop VAR=value prefixes
                    if words and Path(words[0]).name in PROGRAMS:
                        found.append((f"{doc.name}: {part.strip()}", [Path(words[0]).name, *words[1:]]))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 15  # the walk itself works


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_exists(where: str, words: list[str]) -> None:
    command = PROGRAMS[words[0]]
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"{where}: no command {rest[0]!r}"
        command, rest = sub, rest[1:]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{where}: {command.name} has no option {word}"
