"""A small JSON Schema validator for the subset used by `speakers/schemas/*.json`.

The agent checks every message against these schemas before acting on it, so the schema files are the one
definition of a well-formed message. A full validator library would be slower and one more dependency on
the device; this covers the keywords the project's schemas use and refuses any other keyword, so a schema
can never silently check less than it says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from speakers.errors import SpeakerError

_KNOWN = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
    "additionalProperties", "items", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "examples",
}  # fmt: skip

_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),  # exact types: json.loads never makes subclasses, and bool is not int here
    "number": (int, float),
}


class SchemaError(SpeakerError):
    """A message does not match its schema; `path` says where."""

    def __init__(self, path: str, problem: str) -> None:
        where = path or "$"
        super().__init__(
            "speakers.schema", f"消息格式不符：{where}：{problem}", f"{where}: {problem}", path=where, problem=problem
        )
        self.path = where
        self.problem = problem


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _EXACT_TYPES[name])  # integer and number are done above


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise SchemaError(path, f"unsupported $ref {ref}")
        schema = root["$defs"][ref.removeprefix("#/$defs/")]
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, n) for n in names):
            raise SchemaError(path, f"expected {'/'.join(names)}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(path, f"expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(path, "too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(path, "too long")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise SchemaError(path, "does not match the pattern")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(path, f"below {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise SchemaError(path, f"not above {schema['exclusiveMinimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(path, f"above {schema['maximum']}")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(path, "too few items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(path, "too many items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], root, f"{path}[{i}]")
    elif isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise SchemaError(path, f"missing {name!r}")
        props = schema.get("properties", {})
        for name, item in value.items():
            if name in props:
                _check(item, props[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties", True) is False:
                raise SchemaError(path, f"unexpected {name!r}")


def _audit(schema: Any, where: str) -> None:
    """Refuse schemas that use keywords this validator does not implement."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _audit(sub, where)
            elif key not in _KNOWN:
                raise SpeakerError(
                    "speakers.schema_keyword",
                    f"消息模式 {where} 使用了不支持的关键字 {key}。",
                    f"Schema {where} uses the unsupported keyword {key}.",
                )
            elif isinstance(value, dict):
                _audit(value, where)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load `speakers/schemas/<name>.json` (cached)."""
    text = resources.files("speakers").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    _audit(schema, name)
    return schema


_MISSING = object()


def _compile(schema: dict[str, Any], root: dict[str, Any]) -> Callable[[Any], bool]:
    """Turn a schema node into a fast yes/no check (the interpreter above explains a no)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    kind = schema.get("type")
    names = [] if kind is None else [kind] if isinstance(kind, str) else kind
    types = frozenset(t for n in names for t in _EXACT_TYPES[n]) if kind is not None else None
    const = schema.get("const", _MISSING)
    enum = schema.get("enum")
    min_len, max_len = schema.get("minLength", 0), schema.get("maxLength")
    pattern = _pattern(schema["pattern"]).search if "pattern" in schema else None
    minimum, maximum, above = schema.get("minimum"), schema.get("maximum"), schema.get("exclusiveMinimum")
    min_items, max_items = schema.get("minItems", 0), schema.get("maxItems")
    items = _compile(schema["items"], root) if "items" in schema else None
    required = tuple(schema.get("required", ()))
    props = {k: _compile(v, root) for k, v in schema.get("properties", {}).items()}
    closed = schema.get("additionalProperties", True) is False

    def check(value: Any) -> bool:
        kind = type(value)
        if types is not None and kind not in types:
            return False
        if const is not _MISSING and value != const:
            return False
        if enum is not None and value not in enum:
            return False
        if kind is str:
            size = len(value)
            return (
                size >= min_len and (max_len is None or size <= max_len) and (pattern is None or bool(pattern(value)))
            )
        if kind is int or kind is float:
            return (
                (minimum is None or value >= minimum)
                and (maximum is None or value <= maximum)
                and (above is None or value > above)
            )
        if kind is list:
            if len(value) < min_items or (max_items is not None and len(value) > max_items):
                return False
            return items is None or all(items(v) for v in value)
        if kind is dict:
            for name in required:
                if name not in value:
                    return False
            for name, item in value.items():
                sub = props.get(name)
                if sub is None:
                    if closed:
                        return False
                elif not sub(item):
                    return False
        return True

    return check


@cache
def _compiled(name: str) -> Callable[[Any], bool]:
    schema = load_schema(name)
    return _compile(schema, schema)


def validate(value: Any, name: str) -> None:
    """Check `value` against the schema `name`; raise `SchemaError` (saying where) when it does not match."""
    if _compiled(name)(value):
        return
    schema = load_schema(name)
    _check(value, schema, schema, "$")
    raise SchemaError("$", "does not match the schema")


def schema_names() -> list[str]:
    """List the names of all bundled schemas."""
    folder = resources.files("speakers").joinpath("schemas")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))
