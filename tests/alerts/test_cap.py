"""CAP 1.2 validation rules and hostile XML, on the project's generated corpus."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broadcast.alerts import MAX_BYTES, AlertError, parse
from tests.alerts.corpus import HOSTILE, AreaSpec, InfoSpec, cap, english_info, oversize


def _refused(data: bytes) -> AlertError:
    with pytest.raises(AlertError) as caught:
        parse(data)
    error = caught.value
    assert error.kind == "bad_request"
    assert error.zh
    assert error.en
    return error


def test_a_valid_chinese_and_english_message_parses_into_its_fields() -> None:
    alert = parse(cap(infos=[english_info(), InfoSpec()], sent=datetime(2026, 6, 1, tzinfo=UTC)))
    assert (alert.status, alert.msg_type, alert.scope, alert.version) == ("Actual", "Alert", "Public", "1.2")
    assert alert.sent == datetime(2026, 6, 1, tzinfo=UTC)
    assert alert.sent.utcoffset().total_seconds() == 8 * 3600
    zh = alert.infos[1]
    assert (zh.language, zh.event, zh.severity, zh.event_codes) == (
        "zh-CN",
        "暴雨",
        "Severe",
        (("GB/T 35965.1", "11B03"),),
    )
    assert zh.areas[0].geocodes == (("行政区划代码", "421224"),)
    assert alert.warnings == ()


def test_cap_1_1_namespace_is_read_by_the_same_rules() -> None:
    alert = parse(cap(namespace="urn:oasis:names:tc:emergency:cap:1.1"))
    assert alert.version == "1.1"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "alert.empty"),
        (b"<alert><identifier>x", "alert.malformed_xml"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", "alert.not_cap"),
        (cap(namespace="urn:example:not-cap"), "alert.not_cap"),
        (cap(ident=""), "alert.missing_element"),
        (cap(ident="has space"), "alert.invalid_value"),
        (cap(sender="a,b"), "alert.invalid_value"),
        (cap(ident="x" * 256), "alert.invalid_value"),
        (cap(sent="2026-06-01T08:00:00Z"), "alert.invalid_time"),
        (cap(sent="2026-06-01T08:00:00"), "alert.invalid_time"),
        (cap(sent="2026-13-01T08:00:00+08:00"), "alert.invalid_time"),
        (cap(sent="2568-02-25T17:13:00+07:00"), "alert.implausible_time"),
        (cap(status="Real"), "alert.invalid_value"),
        (cap(msg_type="Warning"), "alert.invalid_value"),
        (cap(scope="Restricted"), "alert.missing_element"),
        (cap(scope="Private"), "alert.missing_element"),
        (cap(msg_type="Update", references="only-two,parts"), "alert.invalid_references"),
        (cap(msg_type="Update", references="a,b,yesterday"), "alert.invalid_time"),
        (cap(infos=[InfoSpec(urgency="Now")]), "alert.invalid_value"),
        (cap(infos=[InfoSpec(severity="Red")]), "alert.invalid_value"),
        (cap(infos=[InfoSpec(certainty="Sure")]), "alert.invalid_value"),
        (cap(infos=[InfoSpec(category="Weather")]), "alert.invalid_value"),
        (cap(infos=[InfoSpec(event="")]), "alert.missing_element"),
        (cap(infos=[InfoSpec(areas=[AreaSpec(desc="")])]), "alert.missing_element"),
        (
            cap(infos=[InfoSpec(areas=[AreaSpec(polygons=["29.6,114.5 29.7,114.6 29.6,114.5"])])]),
            "alert.invalid_polygon",
        ),
        (
            cap(infos=[InfoSpec(areas=[AreaSpec(polygons=["29.6,114.5 29.7,114.6 29.8,114.5 29.9,114.4"])])]),
            "alert.invalid_polygon",
        ),
        (cap(infos=[InfoSpec(areas=[AreaSpec(polygons=["91,114 29,114 29,115 91,114"])])]), "alert.invalid_geometry"),
        (cap(infos=[InfoSpec(areas=[AreaSpec(circles=["29.6,114.5"])])]), "alert.invalid_circle"),
        (cap(infos=[InfoSpec(areas=[AreaSpec(circles=["29.6;114.5 3"])])]), "alert.invalid_geometry"),
        (cap(infos=[InfoSpec(areas=[AreaSpec(circles=["29.6,114.5 -3"])])]), "alert.invalid_geometry"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_messages_are_refused_with_a_precise_code(data: bytes, code: str) -> None:
    assert _refused(data).code == code


def test_a_valid_polygon_and_circle_are_kept() -> None:
    ring = "29.6,114.5 29.7,114.6 29.8,114.5 29.6,114.5"
    alert = parse(cap(infos=[InfoSpec(areas=[AreaSpec(polygons=[ring], circles=["29.6,114.5 3.5"])])]))
    area = alert.infos[0].areas[0]
    assert area.polygons[0][0] == (29.6, 114.5)
    assert len(area.polygons[0]) == 4
    assert area.circles[0].radius_km == 3.5


def test_references_are_read_as_triples() -> None:
    refs = "a@b,ID-1,2026-06-01T08:00:00+08:00 a@b,ID-2,2026-06-01T00:30:00-00:00"
    alert = parse(cap(msg_type="Update", references=refs))
    assert [r.identifier for r in alert.references] == ["ID-1", "ID-2"]
    assert alert.references[0].key == ("a@b", "ID-1", "2026-06-01T00:00:00+00:00")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_is_refused(name: str) -> None:
    error = _refused(HOSTILE[name])
    assert error.code == "alert.hostile_xml"
    assert "DTD" in error.zh


def test_oversize_messages_are_refused_before_parsing() -> None:
    assert len(cap()) < MAX_BYTES  # a normal message passes the cap
    error = _refused(oversize(10))
    assert error.code == "alert.too_large"
    assert error.details["limit"] == MAX_BYTES
