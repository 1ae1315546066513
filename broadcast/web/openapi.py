"""The OpenAPI 3.1 document of /api/v1, built from the app's URL map plus the schemas views declare.

A view declares its request body (and, when it wants, its answer) once with `@declare(...)`: the same
JSON Schema validates the request before the view runs and describes it in the document. Routes that
declare nothing still appear, with their path parameters and the one error shape, so a new endpoint is
never missing from the document (a test checks it, and that docs/api.md lists every endpoint).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import fastjsonschema
from flask import Flask, current_app, request
from werkzeug.routing import FloatConverter, IntegerConverter

from broadcast.errors import BroadcastError

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
PREFIX = "/api/v1"
ID_MAX = 2**31 - 1
METHODS = ("get", "post", "put", "patch", "delete")
KIND_OF_CODE = {"not_found": "not_found", "invalid_json": "bad_request"}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
        }
    },
}
ERROR_RESPONSE = {"description": "The one error shape", "content": {"application/json": {"schema": ERROR}}}


def declare(
    *,
    body: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    response: dict[str, Any] | None = None,
    status: int = 200,
    public: bool = False,
) -> Callable[[F], F]:
    """Declare a view's JSON body, multipart form, query parameters and answer; the body is validated here.

    A property's "x-error-code" names the error code a bad value of it gets (default `invalid_field`).
    """
    validate = fastjsonschema.compile(body) if body is not None else None
    arguments = {name: fastjsonschema.compile(schema) for name, schema in (query or {}).items()}

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            for name, check in arguments.items():
                check_argument(name, check, (query or {})[name])
            if validate is not None and request.mimetype != "multipart/form-data":
                check_body(validate, body or {})
            return view(*args, **kwargs)

        wrapped.__openapi__ = {  # type: ignore[attr-defined]
            "body": body,
            "form": form,
            "query": query or {},
            "response": response,
            "status": status,
            "public": public,
        }
        return wrapped  # type: ignore[return-value]

    return decorate


def check_argument(name: str, validate: Callable[[Any], Any], schema: dict[str, Any]) -> None:
    """Check one declared query argument (read as the type its schema names), or raise a clear error."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return
    value: Any = raw
    kind = schema.get("type")
    try:
        if kind == "integer":
            if not raw.lstrip("-").isascii() or not raw.lstrip("-").isdigit() or len(raw) > 18:
                raise ValueError(raw)
            value = int(raw)
        elif kind == "number":
            value = float(raw)
        elif kind == "boolean":
            value = {"1": True, "true": True, "0": False, "false": False}[raw.lower()]
        validate(value)
    except (ValueError, KeyError, fastjsonschema.JsonSchemaValueException):
        limits = {k: schema[k] for k in ("minimum", "maximum", "maxLength", "enum") if k in schema}
        raise BroadcastError(
            "invalid_argument",
            f"参数 {name} 的值无效（应为 {kind or '文本'}，{limits}）。",
            f"Invalid value of the argument {name} (expected {kind or 'text'}, {limits}).",
            field=name,
        ) from None


def check_body(validate: Callable[[Any], Any], schema: dict[str, Any]) -> None:
    """Validate the request's JSON body against its declared schema, or raise a clear error."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    try:
        validate(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [str(p) for p in (exc.path or [])][1:]
        field = ".".join(path) or "(body)"
        top = schema.get("properties", {}).get(path[0], {}) if path else {}
        definition = exc.definition if isinstance(exc.definition, dict) else {}
        missing = [name for name in schema.get("required", []) if name not in data]
        code = definition.get("x-error-code") or top.get("x-error-code") or "invalid_field"
        if exc.rule == "required" and not path and missing:  # name the missing field, with its own code
            field = missing[0]
            code = schema.get("properties", {}).get(field, {}).get("x-error-code") or "field_required"
            code = "field_required" if code in KIND_OF_CODE else code
        rule = exc.message.removeprefix("data.").removeprefix("data ")
        raise BroadcastError(
            code,
            f"字段 {field} 的值无效：{rule}",
            f"Invalid value of {field}: {rule}",
            kind=KIND_OF_CODE.get(code, "invalid"),
            field=field,
        ) from None


def _path_of(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _parameter(name: str, converter: Any) -> dict[str, Any]:
    if isinstance(converter, IntegerConverter):
        schema: dict[str, Any] = {"type": "integer", "minimum": 0}
    elif isinstance(converter, FloatConverter):
        schema = {"type": "number"}
    else:
        schema = {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(app: Flask, rule: Any, method: str) -> dict[str, Any]:
    view = app.view_functions[rule.endpoint]
    spec: dict[str, Any] = getattr(view, "__openapi__", {}) or {}
    summary = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
    operation: dict[str, Any] = {"operationId": f"{rule.endpoint}.{method}", "summary": summary}
    parameters = [_parameter(name, rule._converters[name]) for name in sorted(rule.arguments)]
    for name, schema in (spec.get("query") or {}).items():
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    if parameters:
        operation["parameters"] = parameters
    if method in ("post", "put", "patch"):
        content: dict[str, Any] = {}
        if spec.get("body") is not None:
            content["application/json"] = {"schema": spec["body"]}
        if spec.get("form") is not None:
            content["multipart/form-data"] = {"schema": spec["form"]}
        if content:
            operation["requestBody"] = {"required": True, "content": content}
    success: dict[str, Any] = {"description": "Success"}
    if spec.get("response") is not None:
        success["content"] = {"application/json": {"schema": spec["response"]}}
    key = str(spec.get("status", 200)) if spec else "2XX"
    operation["responses"] = {key: success, "4XX": ERROR_RESPONSE, "503": ERROR_RESPONSE}
    if spec.get("public"):
        operation["security"] = []
    return operation


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every /api/v1 route of this app."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(PREFIX + "/") or rule.endpoint == "api.openapi_document":
            continue
        path = _path_of(rule.rule.removeprefix(PREFIX))
        for method in METHODS:
            if method.upper() in (rule.methods or ()):
                paths.setdefault(path, {})[method] = _operation(app, rule, method)
    paths = {path: {m: ops[m] for m in METHODS if m in ops} for path, ops in sorted(paths.items())}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "village-broadcast API",
            "version": "1",
            "description": "JSON in and out; see docs/api.md. Every error has the shape of components.schemas.Error.",
        },
        "servers": [{"url": PREFIX}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def endpoint_table(doc: dict[str, Any]) -> str:
    """The endpoint list of docs/api.md, generated from the document (a test keeps the two equal)."""
    lines = ["| method and path | what it does |", "|---|---|"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            lines.append(f"| `{method.upper()} {path}` | {operation['summary']} |")
    return "\n".join(lines) + "\n"


def cached_document() -> dict[str, Any]:
    """This app's document, built once (the URL map does not change after start-up)."""
    doc = current_app.extensions.get("openapi_document")
    if doc is None:
        doc = current_app.extensions["openapi_document"] = document(current_app)
    return doc
