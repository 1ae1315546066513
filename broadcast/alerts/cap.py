"""Parse and validate CAP 1.2 alert messages safely (defusedxml: no DTDs, entities or external references)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from broadcast.alerts.errors import AlertError
from broadcast.alerts.model import (
    CATEGORIES,
    CERTAINTIES,
    MSG_TYPES,
    RESPONSE_TYPES,
    SCOPES,
    SEVERITIES,
    STATUSES,
    URGENCIES,
    Area,
    CapAlert,
    Circle,
    Info,
    Reference,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BYTES = 256 * 1024
NAMESPACES = {"urn:oasis:names:tc:emergency:cap:1.2": "1.2", "urn:oasis:names:tc:emergency:cap:1.1": "1.1"}
# CAP dateTime: offset required, "Z" forbidden (CAP 1.2 §3.3.2); fractions of a second tolerated.
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
NO_SPACE = re.compile(r"^[^\s,<&]+$")
FIRST_YEAR, LAST_YEAR = 1990, 2200
MAX_POINTS = 10_000
MAX_ID_CHARS = 255  # what the alerts table keeps of identifier and sender
_ALERT = "identifier sender sent status msgType source scope restriction addresses code note references incidents info"
_INFO = (
    "language category event responseType urgency severity certainty audience eventCode effective onset expires "
    "senderName headline description instruction web contact parameter resource area"
)
ALERT_ELEMENTS = frozenset(_ALERT.split(" "))
INFO_ELEMENTS = frozenset(_INFO.split(" "))
AREA_ELEMENTS = frozenset(("areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"))


def _fail(code: str, zh: str, en: str, **details: object) -> AlertError:
    return AlertError(code, f"预警消息无效：{zh}", f"Invalid CAP message: {en}", **details)


def parse(data: bytes) -> CapAlert:
    """Parse CAP XML bytes into a validated CapAlert, or raise AlertError with a precise reason."""
    if not isinstance(data, bytes | bytearray):
        raise _fail("not_bytes", "消息必须是 XML 字节。", "the message must be XML bytes.")
    if len(data) > MAX_BYTES:
        raise AlertError(
            "too_large",
            f"预警消息过大：{len(data)} 字节（上限 {MAX_BYTES} 字节）。",
            f"CAP message too large: {len(data)} bytes (limit {MAX_BYTES}).",
            limit=MAX_BYTES,
        )
    if not bytes(data).strip():
        raise _fail("empty", "消息为空。", "the body is empty.")
    root = _safe_xml(bytes(data))
    namespace, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    if local != "alert" or namespace not in NAMESPACES:
        raise _fail(
            "not_cap",
            f"根元素不是 CAP 1.2 的 <alert>（实际：{root.tag[:80]}）。",
            f"the root element is not a CAP 1.2 <alert> (got {root.tag[:80]}).",
        )
    return _Reader(namespace, NAMESPACES[namespace]).alert(root)


def _safe_xml(data: bytes) -> Element:
    try:
        return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        kind = type(exc).__name__
        raise AlertError(
            "hostile_xml",
            f"拒绝不安全的 XML（{kind}）：预警消息不得包含 DTD、实体或外部引用。",
            f"Unsafe XML refused ({kind}): a CAP message may not carry a DTD, entities or external references.",
            reason=kind,
        ) from None
    except ParseError as exc:
        raise _fail("malformed_xml", f"XML 格式错误（{exc}）。", f"malformed XML ({exc}).") from None


def parse_time(text: str, what: str) -> datetime:
    """A CAP dateTime (offset required, e.g. 2026-06-01T08:00:00+08:00) as an aware datetime."""
    value = text.strip()
    if not DATETIME.match(value):
        raise _fail(
            "invalid_time",
            f"{what} 时间格式无效：{value[:40]}（须带时区偏移，如 2026-06-01T08:00:00+08:00，不得用 Z）。",
            f"{what} is not a CAP dateTime with an offset (e.g. 2026-06-01T08:00:00+08:00, no 'Z'): {value[:40]}",
            element=what,
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(
            "invalid_time", f"{what} 不是有效的日期时间：{value[:40]}。", f"{what} is not a real date: {value[:40]}"
        ) from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise _fail(
            "implausible_time",
            f"{what} 的年份 {parsed.year} 不可信（须为公历，{FIRST_YEAR}-{LAST_YEAR}）。",
            f"{what} has an implausible year {parsed.year} (Gregorian {FIRST_YEAR}-{LAST_YEAR} expected).",
            element=what,
        )
    return parsed


def parse_references(text: str) -> tuple[Reference, ...]:
    """<references>: space-separated `sender,identifier,sent` triples."""
    refs = []
    for triple in text.split():
        parts = triple.split(",")
        if len(parts) != 3 or not all(parts):
            raise _fail(
                "invalid_references",
                f"references 格式应为“发送者,标识,发送时间”，实际：{triple[:80]}。",
                f"references must be space-separated sender,identifier,sent triples; got {triple[:80]}",
            )
        refs.append(Reference(parts[0], parts[1], parse_time(parts[2], "references")))
    return tuple(refs)


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise _fail(
            "invalid_geometry",
            f"{what} 坐标无效：{text[:40]}（应在 {low} 到 {high} 之间）。",
            f"{what} is not a number from {low} to {high}: {text[:40]}",
        )
    return value


def _point(pair: str) -> tuple[float, float]:
    lat, sep, lon = pair.partition(",")
    if not sep:
        raise _fail("invalid_geometry", f"坐标点应为“纬度,经度”：{pair[:40]}。", f"a point is lat,lon: {pair[:40]}")
    return _number(lat, "纬度 latitude", -90, 90), _number(lon, "经度 longitude", -180, 180)


def parse_polygon(text: str) -> tuple[tuple[float, float], ...]:
    """A closed polygon: at least 4 `lat,lon` points, the first equal to the last."""
    points = tuple(_point(p) for p in text.split())
    if len(points) > MAX_POINTS:
        raise _fail("invalid_geometry", "多边形的点过多。", f"a polygon has more than {MAX_POINTS} points.")
    if len(points) < 4 or points[0] != points[-1]:
        raise _fail(
            "invalid_polygon",
            f"多边形必须闭合且至少 4 个点（首尾相同），实际 {len(points)} 个点。",
            f"a polygon must be closed with at least 4 points (first = last); got {len(points)} points.",
        )
    return points


def parse_circle(text: str) -> Circle:
    """A circle: `lat,lon radius_km`."""
    centre, _, radius = text.strip().partition(" ")
    lat, lon = _point(centre)
    if not radius.strip():
        raise _fail(
            "invalid_circle", f"圆形区域应为“纬度,经度 半径”：{text[:40]}。", f"a circle is lat,lon radius: {text[:40]}"
        )
    return Circle(lat, lon, _number(radius.strip(), "半径 radius", 0, 20_000))


class _Reader:
    """Walks one <alert> tree in the CAP namespace, collecting warnings for what it tolerates."""

    def __init__(self, namespace: str, version: str) -> None:
        self.ns = "{" + namespace + "}"
        self.version = version
        self.warnings: list[str] = []

    def _unknown(self, parent: Element, known: frozenset[str]) -> None:
        for child in parent:
            if isinstance(child.tag, str) and child.tag.startswith(self.ns) and child.tag[len(self.ns) :] not in known:
                self.warnings.append(f"unknown element <{child.tag[len(self.ns) :][:40]}> ignored")

    def _all(self, parent: Element, name: str) -> list[Element]:
        return parent.findall(self.ns + name)

    def _text(self, parent: Element, name: str, *, required: str | None = None) -> str:
        found = parent.find(self.ns + name)
        value = "".join(found.itertext()).strip() if found is not None else ""
        if required and not value:
            raise _fail(
                "missing_element",
                f"缺少必需的元素 <{name}>（{required}）。",
                f"the required element <{name}> is missing ({required}).",
                element=name,
            )
        return value

    def _enum(self, parent: Element, name: str, allowed: tuple[str, ...], where: str) -> str:
        value = self._text(parent, name, required=where)
        if self.version == "1.1" and name == "certainty" and value == "Very Likely":
            return "Likely"  # CAP 1.1's extra value, read as 1.2 reads it
        if value not in allowed:
            raise _fail(
                "invalid_value",
                f"<{name}> 的值 {value[:40]} 无效（可选：{'、'.join(allowed)}）。",
                f"<{name}> has an invalid value {value[:40]!r} (one of {', '.join(allowed)}).",
                element=name,
            )
        return value

    def _pairs(self, parent: Element, name: str) -> tuple[tuple[str, str], ...]:
        return tuple((self._text(e, "valueName"), self._text(e, "value")) for e in self._all(parent, name))

    def _time(self, parent: Element, name: str) -> datetime | None:
        value = self._text(parent, name)
        return parse_time(value, name) if value else None

    def alert(self, root: Element) -> CapAlert:
        """The whole message."""
        identifier = self._text(root, "identifier", required="alert")
        sender = self._text(root, "sender", required="alert")
        for name, value in (("identifier", identifier), ("sender", sender)):
            if len(value) > MAX_ID_CHARS:
                raise _fail(
                    "invalid_value",
                    f"<{name}> 超过 {MAX_ID_CHARS} 个字符。",
                    f"<{name}> is longer than {MAX_ID_CHARS} characters.",
                    element=name,
                )
            if not NO_SPACE.match(value):
                raise _fail(
                    "invalid_value",
                    f"<{name}> 不得包含空格、逗号、< 或 &：{value[:60]}。",
                    f"<{name}> may not contain spaces, commas, < or &: {value[:60]}",
                    element=name,
                )
        sent = parse_time(self._text(root, "sent", required="alert"), "sent")
        status = self._enum(root, "status", STATUSES, "alert")
        msg_type = self._enum(root, "msgType", MSG_TYPES, "alert")
        scope = self._enum(root, "scope", SCOPES, "alert")
        restriction = self._text(root, "restriction")
        addresses = self._text(root, "addresses")
        if scope == "Restricted" and not restriction:
            raise _fail(
                "missing_element", "scope 为 Restricted 时须有 <restriction>。", "Restricted scope needs <restriction>."
            )
        if scope == "Private" and not addresses:
            raise _fail("missing_element", "scope 为 Private 时须有 <addresses>。", "Private scope needs <addresses>.")
        references = parse_references(self._text(root, "references"))
        if msg_type in ("Update", "Cancel", "Ack", "Error") and not references:
            self.warnings.append(f"{msg_type} without <references>")
        infos = tuple(self.info(e) for e in self._all(root, "info"))
        self._unknown(root, ALERT_ELEMENTS)
        if self.version != "1.2":
            self.warnings.append(f"CAP {self.version} namespace read with the 1.2 rules")
        return CapAlert(
            version=self.version,
            identifier=identifier,
            sender=sender,
            sent=sent,
            status=status,
            msg_type=msg_type,
            scope=scope,
            source=self._text(root, "source"),
            restriction=restriction,
            addresses=addresses,
            codes=tuple("".join(e.itertext()).strip() for e in self._all(root, "code")),
            note=self._text(root, "note"),
            references=references,
            incidents=self._text(root, "incidents"),
            infos=infos,
            warnings=tuple(self.warnings),
        )

    def info(self, element: Element) -> Info:
        """One <info> block."""
        categories = tuple("".join(e.itertext()).strip() for e in self._all(element, "category"))
        if not categories:
            raise _fail("missing_element", "缺少必需的元素 <category>（info）。", "<info> needs a <category>.")
        for category in categories:
            if category not in CATEGORIES:
                raise _fail(
                    "invalid_value",
                    f"<category> 的值 {category[:40]} 无效。",
                    f"<category> has an invalid value {category[:40]!r} (one of {', '.join(CATEGORIES)}).",
                    element="category",
                )
        responses = tuple("".join(e.itertext()).strip() for e in self._all(element, "responseType"))
        for response in responses:
            if response not in RESPONSE_TYPES:
                raise _fail(
                    "invalid_value",
                    f"<responseType> 的值 {response[:40]} 无效。",
                    f"<responseType> has an invalid value {response[:40]!r}.",
                    element="responseType",
                )
        self._unknown(element, INFO_ELEMENTS)
        return Info(
            language=self._text(element, "language") or "en-US",
            categories=categories,
            event=self._text(element, "event", required="info"),
            urgency=self._enum(element, "urgency", URGENCIES, "info"),
            severity=self._enum(element, "severity", SEVERITIES, "info"),
            certainty=self._enum(element, "certainty", CERTAINTIES, "info"),
            response_types=responses,
            event_codes=self._pairs(element, "eventCode"),
            parameters=self._pairs(element, "parameter"),
            effective=self._time(element, "effective"),
            onset=self._time(element, "onset"),
            expires=self._time(element, "expires"),
            sender_name=self._text(element, "senderName"),
            headline=self._text(element, "headline"),
            description=self._text(element, "description"),
            instruction=self._text(element, "instruction"),
            web=self._text(element, "web"),
            contact=self._text(element, "contact"),
            areas=tuple(self.area(e) for e in self._all(element, "area")),
        )

    def area(self, element: Element) -> Area:
        """One <area> block (empty polygons, as some feeds send them, are ignored with a warning)."""
        polygons = []
        for e in self._all(element, "polygon"):
            text = "".join(e.itertext()).strip()
            if not text:
                self.warnings.append("empty <polygon> ignored")
                continue
            polygons.append(parse_polygon(text))
        altitude = self._text(element, "altitude")
        ceiling = self._text(element, "ceiling")
        if ceiling and not altitude:
            raise _fail("invalid_area", "<ceiling> 须与 <altitude> 同时出现。", "<ceiling> needs <altitude>.")
        self._unknown(element, AREA_ELEMENTS)
        return Area(
            desc=self._text(element, "areaDesc", required="area"),
            polygons=tuple(polygons),
            circles=tuple(parse_circle("".join(e.itertext())) for e in self._all(element, "circle")),
            geocodes=self._pairs(element, "geocode"),
            altitude=_maybe(altitude, lambda v: _number(v, "altitude", -1e6, 1e7)),
            ceiling=_maybe(ceiling, lambda v: _number(v, "ceiling", -1e6, 1e7)),
        )


def _maybe(value: str, convert: Callable[[str], T]) -> T | None:
    return convert(value) if value else None
