"""Pin: CAP 1.2 parsing at its edges (every field read, every refusal's code, element and message, the limits)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from broadcast.alerts import MAX_BYTES, AlertError, Area, CapAlert, Circle, Info, Reference, parse

CN = timezone(timedelta(hours=8))
NS = "urn:oasis:names:tc:emergency:cap:1.2"
HEAD = {
    "identifier": "421224041000_20260601080000_1",
    "sender": "12379@hb.gov.cn",
    "sent": "2026-06-01T08:00:00+08:00",
    "status": "Actual",
    "msgType": "Alert",
    "scope": "Public",
}
INFO = {
    "language": "zh-CN",
    "category": "Met",
    "event": "暴雨",
    "urgency": "Immediate",
    "severity": "Severe",
    "certainty": "Likely",
}
AREA = "<area><areaDesc>通山县</areaDesc></area>"


def _elements(values: dict[str, str | None]) -> str:
    return "".join(f"<{name}>{value}</{name}>" for name, value in values.items() if value is not None)


def info_xml(extra: str = "", area: str = AREA, **fields: str | None) -> str:
    """One <info>: the required elements (None drops one), then `extra`, then the area."""
    return f"<info>{_elements({**INFO, **fields})}{extra}{area}</info>"


def alert_xml(
    extra: str = "", infos: tuple[str, ...] | None = None, namespace: str = NS, **fields: str | None
) -> bytes:
    """One message: the required alert elements (None drops one), then `extra`, then the infos."""
    body = "".join(infos if infos is not None else (info_xml(),))
    return f'<alert xmlns="{namespace}">{_elements({**HEAD, **fields})}{extra}{body}</alert>'.encode()


def area_xml(inner: str, desc: str | None = "通山县") -> str:
    """One <area> around `inner`."""
    return "<area>" + (f"<areaDesc>{desc}</areaDesc>" if desc is not None else "") + inner + "</area>"


def _refused(data: bytes) -> AlertError:
    with pytest.raises(AlertError) as caught:
        parse(data)
    assert caught.value.kind == "bad_request"
    return caught.value


def _said(data: bytes) -> tuple[str, str, str, dict[str, object]]:
    error = _refused(data)
    return error.code, error.zh, error.en, error.details


# --- a message with every field is read whole ----------------------------------------------------------------------

FULL = alert_xml(
    extra=(
        "<source>通山县气象台</source><restriction>仅限应急部门</restriction><addresses>a@b c@d</addresses>"
        "<code>IPAWSv1.0</code><code> 11B03 </code><note>演练备注</note>"
        "<references>12379@hb.gov.cn,OLD-1,2026-06-01T07:00:00+08:00</references><incidents>INC-9</incidents>"
    ),
    infos=(
        info_xml(
            extra=(
                "<category>Safety</category><responseType>Evacuate</responseType><responseType>Monitor</responseType>"
                "<audience>全体村民</audience>"
                "<eventCode><valueName>GB/T 35965.1</valueName><value>11B03</value></eventCode>"
                "<effective>2026-06-01T08:00:00+08:00</effective><onset>2026-06-01T09:00:00+08:00</onset>"
                "<expires>2026-06-01T20:00:00+08:00</expires><senderName>通山县气象台</senderName>"
                "<headline>暴雨橙色预警</headline><description>雨很大。</description><instruction>远离河道。</instruction>"
                "<web>http://example.org/a</web><contact>0715-1234567</contact>"
                "<parameter><valueName>预警级别</valueName><value>橙色</value></parameter>"
                "<resource><resourceDesc>audio</resourceDesc></resource>"
            ),
            area=(
                "<area><areaDesc>黄沙铺镇</areaDesc>"
                "<polygon>29.6,114.5 29.7,114.6 29.8,114.5 29.6,114.5</polygon>"
                "<polygon> </polygon><polygon>1,1 1,2 2,2 1,1</polygon>"
                "<circle> 29.6,114.5 3.5 </circle>"
                "<geocode><valueName>行政区划代码</valueName><value>421224104000</value></geocode>"
                "<altitude>100</altitude><ceiling>2000.5</ceiling></area>"
            ),
        ),
        info_xml(language=None, category="Other", event="Test", urgency="Past", severity="Minor", certainty="Unknown"),
    ),
    scope="Restricted",
    msgType="Update",
)


def test_every_element_of_a_full_message_is_read() -> None:
    """Each alert, info and area element lands in its field; repeated ones keep their order."""
    sent = datetime(2026, 6, 1, 8, tzinfo=CN)
    area = Area(
        desc="黄沙铺镇",
        polygons=(
            ((29.6, 114.5), (29.7, 114.6), (29.8, 114.5), (29.6, 114.5)),
            ((1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (1.0, 1.0)),
        ),
        circles=(Circle(29.6, 114.5, 3.5),),
        geocodes=(("行政区划代码", "421224104000"),),
        altitude=100.0,
        ceiling=2000.5,
    )
    first = Info(
        language="zh-CN",
        categories=("Met", "Safety"),
        event="暴雨",
        urgency="Immediate",
        severity="Severe",
        certainty="Likely",
        response_types=("Evacuate", "Monitor"),
        event_codes=(("GB/T 35965.1", "11B03"),),
        parameters=(("预警级别", "橙色"),),
        effective=sent,
        onset=sent + timedelta(hours=1),
        expires=sent + timedelta(hours=12),
        sender_name="通山县气象台",
        headline="暴雨橙色预警",
        description="雨很大。",
        instruction="远离河道。",
        web="http://example.org/a",
        contact="0715-1234567",
        areas=(area,),
    )
    second = Info(
        language="en-US",
        categories=("Other",),
        event="Test",
        urgency="Past",
        severity="Minor",
        certainty="Unknown",
        areas=(Area(desc="通山县"),),
    )
    assert parse(FULL) == CapAlert(
        version="1.2",
        identifier="421224041000_20260601080000_1",
        sender="12379@hb.gov.cn",
        sent=sent,
        status="Actual",
        msg_type="Update",
        scope="Restricted",
        source="通山县气象台",
        restriction="仅限应急部门",
        addresses="a@b c@d",
        codes=("IPAWSv1.0", "11B03"),
        note="演练备注",
        references=(Reference("12379@hb.gov.cn", "OLD-1", sent - timedelta(hours=1)),),
        incidents="INC-9",
        infos=(first, second),
        warnings=("empty <polygon> ignored",),
    )


def test_a_bytearray_is_read_like_bytes() -> None:
    """Bytes or a bytearray: both are XML bytes."""
    assert parse(bytearray(alert_xml())) == parse(alert_xml())


def test_a_private_message_keeps_its_addresses() -> None:
    """Private scope with <addresses> is accepted."""
    assert parse(alert_xml(extra="<addresses>ops@county</addresses>", scope="Private")).addresses == "ops@county"


# --- warnings for what is tolerated -------------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["Update", "Cancel", "Ack", "Error"])
def test_a_follow_up_without_references_is_read_with_a_warning(msg_type: str) -> None:
    """Update, Cancel, Ack and Error should name what they follow; without it they pass with a warning."""
    assert parse(alert_xml(msgType=msg_type)).warnings == (f"{msg_type} without <references>",)
    refs = "<references>a,b,2026-06-01T07:00:00+08:00</references>"
    assert parse(alert_xml(extra=refs, msgType=msg_type)).warnings == ()


def test_a_new_alert_needs_no_references() -> None:
    """An Alert with no references is a plain new message: no warning."""
    assert parse(alert_xml()).warnings == ()


def test_unknown_cap_elements_are_warned_about_and_foreign_ones_ignored() -> None:
    """An unknown CAP element in alert, info or area is named in a warning (cut to 40 characters)."""
    long_name = "x" * 50
    data = alert_xml(
        extra=f"<mystery>1</mystery><{long_name}/><other xmlns='urn:example'>ok</other>",
        infos=(info_xml(extra="<colour>red</colour>", area=area_xml("<Polygon>1,1</Polygon>")),),
    )
    assert parse(data).warnings == (
        "unknown element <colour> ignored",
        "unknown element <Polygon> ignored",
        "unknown element <mystery> ignored",
        f"unknown element <{'x' * 40}> ignored",
    )


def test_cap_1_1_is_read_with_a_warning_and_its_very_likely_certainty() -> None:
    """CAP 1.1 passes by the 1.2 rules with a warning; its certainty Very Likely reads as Likely."""
    data = alert_xml(namespace="urn:oasis:names:tc:emergency:cap:1.1", infos=(info_xml(certainty="Very Likely"),))
    alert = parse(data)
    assert (alert.version, alert.infos[0].certainty) == ("1.1", "Likely")
    assert alert.warnings == ("CAP 1.1 namespace read with the 1.2 rules",)


def test_very_likely_is_not_a_cap_1_2_value_nor_an_urgency() -> None:
    """Only a 1.1 message's certainty may say Very Likely."""
    assert _refused(alert_xml(infos=(info_xml(certainty="Very Likely"),))).details == {"element": "certainty"}
    old = "urn:oasis:names:tc:emergency:cap:1.1"
    assert _refused(alert_xml(namespace=old, infos=(info_xml(urgency="Very Likely"),))).details == {
        "element": "urgency"
    }
    assert _refused(alert_xml(namespace=old, infos=(info_xml(certainty="very likely"),))).code == "alert.invalid_value"


def test_an_empty_polygon_is_skipped_not_the_ones_after_it() -> None:
    """Some feeds send an empty <polygon>: it is ignored with a warning and the next polygon still counts."""
    ring = "1,1 1,2 2,2 1,1"
    alert = parse(alert_xml(infos=(info_xml(area=area_xml(f"<polygon></polygon><polygon>{ring}</polygon>")),)))
    assert len(alert.infos[0].areas[0].polygons) == 1
    assert alert.warnings == ("empty <polygon> ignored",)


# --- limits -------------------------------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    data = alert_xml()
    head, tail = data.rsplit(b"</alert>", 1)
    return head + b" " * (size - len(data)) + b"</alert>" + tail


def test_a_message_of_exactly_the_size_limit_is_read() -> None:
    """MAX_BYTES is allowed; one byte more is refused before parsing, with the sizes in the message."""
    assert parse(_padded(MAX_BYTES)).identifier == HEAD["identifier"]
    error = _refused(_padded(MAX_BYTES + 1))
    assert (error.code, error.details) == ("alert.too_large", {"limit": MAX_BYTES})
    assert error.zh == f"预警消息过大：{MAX_BYTES + 1} 字节（上限 {MAX_BYTES} 字节）。"
    assert error.en == f"CAP message too large: {MAX_BYTES + 1} bytes (limit {MAX_BYTES})."


def test_identifier_and_sender_may_have_255_characters() -> None:
    """255 characters fit the alerts table; 256 are refused, naming the element."""
    assert parse(alert_xml(identifier="i" * 255, sender="s" * 255)).sender == "s" * 255
    for name in ("identifier", "sender"):
        assert _said(alert_xml(**{name: "x" * 256})) == (
            "alert.invalid_value",
            f"预警消息无效：<{name}> 超过 255 个字符。",
            f"Invalid CAP message: <{name}> is longer than 255 characters.",
            {"element": name},
        )


@pytest.mark.parametrize(("year", "ok"), [(1989, False), (1990, True), (2200, True), (2201, False)])
def test_plausible_years_run_from_1990_to_2200(year: int, ok: bool) -> None:
    """A year outside 1990–2200 (a Buddhist-Era year, a typo) is refused as implausible."""
    data = alert_xml(sent=f"{year}-06-01T08:00:00+08:00")
    if ok:
        assert parse(data).sent.year == year
    else:
        assert _said(data) == (
            "alert.implausible_time",
            f"预警消息无效：sent 的年份 {year} 不可信（须为公历，1990-2200）。",
            f"Invalid CAP message: sent has an implausible year {year} (Gregorian 1990-2200 expected).",
            {"element": "sent"},
        )


def test_a_fraction_of_a_second_is_tolerated() -> None:
    """CAP times may carry a fraction of a second."""
    assert parse(alert_xml(sent="2026-06-01T08:00:00.250+08:00")).sent.microsecond == 250_000


def _ring(n: int) -> str:
    return " ".join(["1,1"] + [f"1,{1 + k / n:.6f}" for k in range(1, n - 1)] + ["1,1"])


def test_a_polygon_may_have_ten_thousand_points() -> None:
    """10 000 points are read; 10 001 are refused as too many."""
    ok = parse(alert_xml(infos=(info_xml(area=area_xml(f"<polygon>{_ring(10_000)}</polygon>")),)))
    assert len(ok.infos[0].areas[0].polygons[0]) == 10_000
    assert _said(alert_xml(infos=(info_xml(area=area_xml(f"<polygon>{_ring(10_001)}</polygon>")),))) == (
        "alert.invalid_geometry",
        "预警消息无效：多边形的点过多。",
        "Invalid CAP message: a polygon has more than 10000 points.",
        {},
    )


@pytest.mark.parametrize(
    ("point", "ok"),
    [
        ("-90,-180", True),
        ("90,180", True),
        ("-90.001,0", False),
        ("90.001,0", False),
        ("0,-180.001", False),
        ("0,180.001", False),
    ],
)
def test_coordinates_run_to_the_poles_and_the_antimeridian(point: str, ok: bool) -> None:
    """Latitude −90…90 and longitude −180…180 inclusive, as a circle's centre."""
    data = alert_xml(infos=(info_xml(area=area_xml(f"<circle>{point} 1</circle>")),))
    if ok:
        circle = parse(data).infos[0].areas[0].circles[0]
        assert (circle.lat, circle.lon) == tuple(float(v) for v in point.split(","))
    else:
        assert _refused(data).code == "alert.invalid_geometry"


@pytest.mark.parametrize(("radius", "ok"), [("0", True), ("20000", True), ("-0.001", False), ("20000.001", False)])
def test_a_circle_radius_runs_from_zero_to_20000_km(radius: str, ok: bool) -> None:
    """A zero radius (a point, as real feeds send) up to 20 000 km."""
    data = alert_xml(infos=(info_xml(area=area_xml(f"<circle>29.6,114.5 {radius}</circle>")),))
    if ok:
        assert parse(data).infos[0].areas[0].circles[0].radius_km == float(radius)
    else:
        assert _refused(data).code == "alert.invalid_geometry"


@pytest.mark.parametrize(
    ("value", "ok"), [("-1000000", True), ("10000000", True), ("-1000000.5", False), ("10000000.5", False)]
)
def test_altitude_and_ceiling_limits(value: str, ok: bool) -> None:
    """Altitude and ceiling are numbers from −1e6 to 1e7, each refused by its own name."""
    for element in ("altitude", "ceiling"):
        inner = f"<altitude>{value if element == 'altitude' else '0'}</altitude>"
        inner += f"<ceiling>{value}</ceiling>" if element == "ceiling" else ""
        data = alert_xml(infos=(info_xml(area=area_xml(inner)),))
        if ok:
            assert getattr(parse(data).infos[0].areas[0], element) == float(value)
        else:
            assert _said(data) == (
                "alert.invalid_geometry",
                f"预警消息无效：{element} 坐标无效：{value}（应在 -1000000.0 到 10000000.0 之间）。",
                f"Invalid CAP message: {element} is not a number from -1000000.0 to 10000000.0: {value}",
                {},
            )


def test_an_area_without_altitude_or_ceiling_has_none() -> None:
    """Absent altitude and ceiling are None, not zero."""
    area = parse(alert_xml()).infos[0].areas[0]
    assert (area.altitude, area.ceiling) == (None, None)


# --- every refusal: code, element and message ------------------------------------------------------------------

INVALID_TIME_ZH = "（须带时区偏移，如 2026-06-01T08:00:00+08:00，不得用 Z）。"
INVALID_TIME_EN = " is not a CAP dateTime with an offset (e.g. 2026-06-01T08:00:00+08:00, no 'Z'): "


@pytest.mark.parametrize(
    ("data", "code", "zh", "en", "details"),
    [
        (b"  \n ", "empty", "消息为空。", "the body is empty.", {}),
        (
            b"<alert/>",
            "not_cap",
            "根元素不是 CAP 1.2 的 <alert>（实际：alert）。",
            "the root element is not a CAP 1.2 <alert> (got alert).",
            {},
        ),
        (
            b"<alert xmlns='urn:" + b"n" * 100 + b"'/>",
            "not_cap",
            "根元素不是 CAP 1.2 的 <alert>（实际：{urn:" + "n" * 75 + "）。",
            "the root element is not a CAP 1.2 <alert> (got {urn:" + "n" * 75 + ").",
            {},
        ),
        (
            f"<info xmlns='{NS}'/>".encode(),
            "not_cap",
            f"根元素不是 CAP 1.2 的 <alert>（实际：{{{NS}}}info）。",
            f"the root element is not a CAP 1.2 <alert> (got {{{NS}}}info).",
            {},
        ),
        (
            alert_xml(identifier=None),
            "missing_element",
            "缺少必需的元素 <identifier>（alert）。",
            "the required element <identifier> is missing (alert).",
            {"element": "identifier"},
        ),
        (
            alert_xml(sender=" "),
            "missing_element",
            "缺少必需的元素 <sender>（alert）。",
            "the required element <sender> is missing (alert).",
            {"element": "sender"},
        ),
        (
            alert_xml(sent=None),
            "missing_element",
            "缺少必需的元素 <sent>（alert）。",
            "the required element <sent> is missing (alert).",
            {"element": "sent"},
        ),
        (
            alert_xml(status=None),
            "missing_element",
            "缺少必需的元素 <status>（alert）。",
            "the required element <status> is missing (alert).",
            {"element": "status"},
        ),
        (
            alert_xml(msgType=None),
            "missing_element",
            "缺少必需的元素 <msgType>（alert）。",
            "the required element <msgType> is missing (alert).",
            {"element": "msgType"},
        ),
        (
            alert_xml(scope=None),
            "missing_element",
            "缺少必需的元素 <scope>（alert）。",
            "the required element <scope> is missing (alert).",
            {"element": "scope"},
        ),
        (
            alert_xml(identifier="a<b".replace("<", "&lt;") + "x" * 70),
            "invalid_value",
            "<identifier> 不得包含空格、逗号、< 或 &：a<b" + "x" * 57 + "。",
            "<identifier> may not contain spaces, commas, < or &: a<b" + "x" * 57,
            {"element": "identifier"},
        ),
        (
            alert_xml(sender="a&amp;b"),
            "invalid_value",
            "<sender> 不得包含空格、逗号、< 或 &：a&b。",
            "<sender> may not contain spaces, commas, < or &: a&b",
            {"element": "sender"},
        ),
        (
            alert_xml(sent="2026-06-01T08:00:00Z" + "0" * 30),
            "invalid_time",
            "sent 时间格式无效：2026-06-01T08:00:00Z" + "0" * 20 + INVALID_TIME_ZH,
            "sent" + INVALID_TIME_EN + "2026-06-01T08:00:00Z" + "0" * 20,
            {"element": "sent"},
        ),
        (
            alert_xml(sent="2026-02-30T08:00:00+08:00"),
            "invalid_time",
            "sent 不是有效的日期时间：2026-02-30T08:00:00+08:00。",
            "sent is not a real date: 2026-02-30T08:00:00+08:00",
            {},
        ),
        (
            alert_xml(status="actual"),
            "invalid_value",
            "<status> 的值 actual 无效（可选：Actual、Exercise、System、Test、Draft）。",
            "<status> has an invalid value 'actual' (one of Actual, Exercise, System, Test, Draft).",
            {"element": "status"},
        ),
        (
            alert_xml(msgType="M" * 50),
            "invalid_value",
            "<msgType> 的值 " + "M" * 40 + " 无效（可选：Alert、Update、Cancel、Ack、Error）。",
            "<msgType> has an invalid value '" + "M" * 40 + "' (one of Alert, Update, Cancel, Ack, Error).",
            {"element": "msgType"},
        ),
        (
            alert_xml(scope="Restricted"),
            "missing_element",
            "scope 为 Restricted 时须有 <restriction>。",
            "Restricted scope needs <restriction>.",
            {},
        ),
        (
            alert_xml(extra="<addresses>a@b</addresses>", scope="Restricted"),
            "missing_element",
            "scope 为 Restricted 时须有 <restriction>。",
            "Restricted scope needs <restriction>.",
            {},
        ),
        (
            alert_xml(extra="<restriction>only us</restriction>", scope="Private"),
            "missing_element",
            "scope 为 Private 时须有 <addresses>。",
            "Private scope needs <addresses>.",
            {},
        ),
        (
            alert_xml(extra="<references>a,b,2026-06-01T07:00:00+08:00 a,,c " + "r" * 90 + "</references>"),
            "invalid_references",
            "references 格式应为“发送者,标识,发送时间”，实际：a,,c。",
            "references must be space-separated sender,identifier,sent triples; got a,,c",
            {},
        ),
        (
            alert_xml(extra="<references>" + "r" * 90 + "</references>"),
            "invalid_references",
            "references 格式应为“发送者,标识,发送时间”，实际：" + "r" * 80 + "。",
            "references must be space-separated sender,identifier,sent triples; got " + "r" * 80,
            {},
        ),
        (
            alert_xml(extra="<references>a,b,2026-06-01</references>"),
            "invalid_time",
            "references 时间格式无效：2026-06-01" + INVALID_TIME_ZH,
            "references" + INVALID_TIME_EN + "2026-06-01",
            {"element": "references"},
        ),
        (
            alert_xml(infos=(info_xml(category=None),)),
            "missing_element",
            "缺少必需的元素 <category>（info）。",
            "<info> needs a <category>.",
            {},
        ),
        (
            alert_xml(infos=(info_xml(category="W" * 50),)),
            "invalid_value",
            "<category> 的值 " + "W" * 40 + " 无效。",
            "<category> has an invalid value '"
            + "W" * 40
            + "' (one of Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other).",
            {"element": "category"},
        ),
        (
            alert_xml(infos=(info_xml(extra="<responseType>Run" + "!" * 50 + "</responseType>"),)),
            "invalid_value",
            "<responseType> 的值 Run" + "!" * 37 + " 无效。",
            "<responseType> has an invalid value 'Run" + "!" * 37 + "'.",
            {"element": "responseType"},
        ),
        (
            alert_xml(infos=(info_xml(event=None),)),
            "missing_element",
            "缺少必需的元素 <event>（info）。",
            "the required element <event> is missing (info).",
            {"element": "event"},
        ),
        (
            alert_xml(infos=(info_xml(urgency=None),)),
            "missing_element",
            "缺少必需的元素 <urgency>（info）。",
            "the required element <urgency> is missing (info).",
            {"element": "urgency"},
        ),
        (
            alert_xml(infos=(info_xml(severity=None),)),
            "missing_element",
            "缺少必需的元素 <severity>（info）。",
            "the required element <severity> is missing (info).",
            {"element": "severity"},
        ),
        (
            alert_xml(infos=(info_xml(certainty=None),)),
            "missing_element",
            "缺少必需的元素 <certainty>（info）。",
            "the required element <certainty> is missing (info).",
            {"element": "certainty"},
        ),
        (
            alert_xml(infos=(info_xml(extra="<effective>soon</effective>"),)),
            "invalid_time",
            "effective 时间格式无效：soon" + INVALID_TIME_ZH,
            "effective" + INVALID_TIME_EN + "soon",
            {"element": "effective"},
        ),
        (
            alert_xml(infos=(info_xml(extra="<onset>soon</onset>"),)),
            "invalid_time",
            "onset 时间格式无效：soon" + INVALID_TIME_ZH,
            "onset" + INVALID_TIME_EN + "soon",
            {"element": "onset"},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("", desc=None)),)),
            "missing_element",
            "缺少必需的元素 <areaDesc>（area）。",
            "the required element <areaDesc> is missing (area).",
            {"element": "areaDesc"},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<polygon>1,1 1,2 1,1</polygon>")),)),
            "invalid_polygon",
            "多边形必须闭合且至少 4 个点（首尾相同），实际 3 个点。",
            "a polygon must be closed with at least 4 points (first = last); got 3 points.",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<polygon>1,1 1,2 2,2 2,1</polygon>")),)),
            "invalid_polygon",
            "多边形必须闭合且至少 4 个点（首尾相同），实际 4 个点。",
            "a polygon must be closed with at least 4 points (first = last); got 4 points.",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<polygon>1;1 1,2 2,2 1;1</polygon>")),)),
            "invalid_geometry",
            "坐标点应为“纬度,经度”：1;1。",
            "a point is lat,lon: 1;1",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>" + "9" * 50 + " 1</circle>")),)),
            "invalid_geometry",
            "坐标点应为“纬度,经度”：" + "9" * 40 + "。",
            "a point is lat,lon: " + "9" * 40,
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>north,114 1</circle>")),)),
            "invalid_geometry",
            "纬度 latitude 坐标无效：north（应在 -90 到 90 之间）。",
            "纬度 latitude is not a number from -90 to 90: north",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>29,114,5 1</circle>")),)),
            "invalid_geometry",
            "经度 longitude 坐标无效：114,5（应在 -180 到 180 之间）。",
            "经度 longitude is not a number from -180 to 180: 114,5",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>29,114 " + "7" * 50 + "</circle>")),)),
            "invalid_geometry",
            "半径 radius 坐标无效：" + "7" * 40 + "（应在 0 到 20000 之间）。",
            "半径 radius is not a number from 0 to 20000: " + "7" * 40,
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>29.6,114.5 </circle>")),)),
            "invalid_circle",
            "圆形区域应为“纬度,经度 半径”：29.6,114.5 。",
            "a circle is lat,lon radius: 29.6,114.5 ",
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<circle>29.6,114.5" + "0" * 50 + "</circle>")),)),
            "invalid_circle",
            "圆形区域应为“纬度,经度 半径”：29.6,114.5" + "0" * 30 + "。",
            "a circle is lat,lon radius: 29.6,114.5" + "0" * 30,
            {},
        ),
        (
            alert_xml(infos=(info_xml(area=area_xml("<ceiling>100</ceiling>")),)),
            "invalid_area",
            "<ceiling> 须与 <altitude> 同时出现。",
            "<ceiling> needs <altitude>.",
            {},
        ),
    ],
)
def test_each_refusal_names_its_reason(data: bytes, code: str, zh: str, en: str, details: dict[str, object]) -> None:
    """A refused message says exactly what is wrong, in Chinese and English, and which element."""
    assert _said(data) == (f"alert.{code}", f"预警消息无效：{zh}", f"Invalid CAP message: {en}", details)


def test_text_instead_of_bytes_is_refused() -> None:
    """The parser reads bytes only: a str is refused as not_bytes."""
    assert _said(alert_xml().decode()) == (  # type: ignore[arg-type]
        "alert.not_bytes",
        "预警消息无效：消息必须是 XML 字节。",
        "Invalid CAP message: the message must be XML bytes.",
        {},
    )


def test_malformed_xml_is_refused_with_the_parser_reason() -> None:
    """Broken XML is malformed_xml, quoting the parser's own reason."""
    error = _refused(b"<alert><identifier>x")
    assert error.code == "alert.malformed_xml"
    assert error.zh.startswith("预警消息无效：XML 格式错误（no element found")
    assert error.en.startswith("Invalid CAP message: malformed XML (no element found")
    assert error.details == {}
    assert error.__suppress_context__


def test_a_dtd_is_refused_naming_the_defusedxml_reason() -> None:
    """Any DTD is hostile: the reason names defusedxml's exception, and no parser trace is chained."""
    error = _refused(b'<?xml version="1.0"?><!DOCTYPE alert [<!ELEMENT alert ANY>]><alert/>')
    assert error.code == "alert.hostile_xml"
    assert error.details == {"reason": "DTDForbidden"}
    assert error.zh == "拒绝不安全的 XML（DTDForbidden）：预警消息不得包含 DTD、实体或外部引用。"
    assert error.en == (
        "Unsafe XML refused (DTDForbidden): a CAP message may not carry a DTD, entities or external references."
    )
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_nested_markup_inside_an_element_keeps_all_its_text() -> None:
    """An element's value is all of its text with nested markup removed, pieces joined with nothing between."""
    data = alert_xml(
        extra="<code>IPAWS<b>v1</b>.0</code>",
        infos=(
            info_xml(
                extra="<responseType>Eva<i>cu</i>ate</responseType><headline>暴雨<b>橙色</b>预警</headline>",
                area=area_xml(
                    "<polygon>1,1 1,2 <x/>2,2 1,1</polygon><circle>29.6,<x/>114.5 3</circle>", desc="通山<b>县</b>"
                ),
                category="M<b>e</b>t",
            ),
        ),
    )
    alert = parse(data)
    info = alert.infos[0]
    assert alert.codes == ("IPAWSv1.0",)
    assert (info.categories, info.response_types, info.headline) == (("Met",), ("Evacuate",), "暴雨橙色预警")
    assert info.areas[0] == Area(
        desc="通山县", polygons=(((1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (1.0, 1.0)),), circles=(Circle(29.6, 114.5, 3.0),)
    )


def test_an_impossible_date_is_quoted_cut_to_40_characters() -> None:
    """A well-formed but impossible date (30 February) names at most 40 characters of the value."""
    value = "2026-02-30T08:00:00." + "0" * 30 + "+08:00"
    assert _said(alert_xml(sent=value)) == (
        "alert.invalid_time",
        f"预警消息无效：sent 不是有效的日期时间：{value[:40]}。",
        f"Invalid CAP message: sent is not a real date: {value[:40]}",
        {},
    )
