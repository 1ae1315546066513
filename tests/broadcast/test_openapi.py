"""The OpenAPI document describes every /api/v1 route, docs/api.md lists exactly its endpoints, and a
schemathesis run against the live app (on SQLite and PostgreSQL) finds no 500 and no answer outside it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from broadcast.web.openapi import PREFIX, document, endpoint_table
from tests.broadcast.conftest import auth, seed_county

# Schema-valid input may still be refused (an unknown id, a region out of scope): acceptance is not checked.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# Bounded, repeatable and leaving no example database behind: the run takes well under two minutes per database.
FUZZ = settings(
    max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)  # valid requests, and requests the schema forbids
API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
START, END = "<!-- endpoints: generated from the OpenAPI document -->", "<!-- endpoints: end -->"


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, /api/v1 path) of every operation in the document."""
    return {(method.upper(), PREFIX + path) for path, ops in doc["paths"].items() for method in ops}


def routed(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of every /api/v1 route of the app, written as OpenAPI writes paths."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/") and rule.endpoint != "api.openapi_document":
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            found |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_every_api_route_is_in_the_served_document(client: Any) -> None:
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200  # no token needed
    doc = served.get_json()
    assert doc["openapi"].startswith("3.1")
    assert ("POST", "/api/v1/broadcasts") in documented(doc)
    assert routed(client.application) == documented(doc)
    public = {p for p, ops in doc["paths"].items() for op in ops.values() if op.get("security") == []}
    assert public == {"/time"}
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "4XX" in op["responses"]
            assert op["summary"]


def test_docs_list_exactly_the_documents_endpoints(app: Any) -> None:
    text = API_MD.read_text(encoding="utf-8")
    assert START in text
    assert END in text
    listed = text.split(START, 1)[1].split(END, 1)[0].strip() + "\n"
    expected = endpoint_table(document(app))
    assert listed == expected, "docs/api.md is stale; paste:\n" + expected


def test_declared_bodies_are_checked_before_any_work(client: Any) -> None:
    tokens = seed_county(client.application)
    good = client.post("/api/v1/clips", json={"text": "请注意。", "rate": 1.2}, headers=auth(tokens["admin"]))
    assert good.status_code == 201
    bad = client.post("/api/v1/clips", json={"text": "请注意。", "rate": "fast"}, headers=auth(tokens["admin"], "en"))
    assert bad.status_code == 422
    assert bad.get_json()["error"]["code"] == "invalid_rate"
    assert "rate" in bad.get_json()["error"]["message"]


def test_no_request_gets_a_500_or_an_answer_outside_the_document(app: Any) -> None:
    """Schemathesis, through its Python API (its pytest plugin does not load under this pytest), one operation
    after another, with a bounded number of examples each."""
    headers = {"Authorization": f"Bearer {seed_county(app)['admin']}"}
    loaded = schemathesis.openapi.from_wsgi(PREFIX + "/openapi.json", app)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) == len(documented(document(app)))

    for operation, mode in itertools.product(operations, MODES):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(FUZZ)
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, no body)
            continue
        except (Exception, BaseExceptionGroup) as exc:  # collect every failure, then report them all
            failures[f"{operation.label} ({mode.value})"] = str(exc)[:1500]
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
