"""JSON Schema validation of every protocol message, with fastjsonschema (each schema compiled once).

The agent checks every message against `speakers/schemas/*.json` before acting on it, and the server checks
every command before storing it, so the schema files are the one definition of a well-formed message.
fastjsonschema turns each schema into Python code once per process; a check then costs a few microseconds,
which a simulated fleet of thousands of speakers can afford.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from speakers.errors import SpeakerError

logger = logging.getLogger(__name__)


class SchemaError(SpeakerError):
    """A message does not match its schema; `path` says where (`$.cmd.title`, `$.targets[0]`)."""

    def __init__(self, path: str, problem: str) -> None:
        where = path or "$"
        super().__init__(
            "speakers.schema", f"消息格式不符：{where}：{problem}", f"{where}: {problem}", path=where, problem=problem
        )
        self.path = where
        self.problem = problem


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load `speakers/schemas/<name>.json` (cached)."""
    text = resources.files("speakers").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _compiled(name: str) -> Callable[[Any], Any]:
    schema = dict(load_schema(name))
    # fastjsonschema knows drafts 4/6/7; the keywords these schemas use mean the same in draft 2020-12
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema, use_default=False)  # type: ignore[no-any-return]


def _where(name: str) -> str:
    """fastjsonschema's `data.cmd.items[0]` as `$.cmd.items[0]`."""
    return "$" + name[len("data") :] if name.startswith("data") else name


def validate(value: Any, name: str) -> None:
    """Check `value` against the schema `name`; raise `SchemaError` (saying where) when it does not match."""
    try:
        _compiled(name)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = _where(exc.name or "data")
        problem = (exc.message or "").removeprefix(exc.name or "").strip() or "does not match the schema"
        raise SchemaError(where, problem) from None


def schema_names() -> list[str]:
    """List the names of all bundled schemas."""
    folder = resources.files("speakers").joinpath("schemas")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))
