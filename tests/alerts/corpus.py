"""The project's own CAP corpus, generated in tests: valid, invalid and hostile, Chinese and English."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from xml.sax.saxutils import escape

CN = timezone(timedelta(hours=8))
SENDER = "12379@hb.gov.cn"
COUNTY_GEOCODE = "421224"  # 通山县
HUANGSHA_GEOCODE = "421224104000"  # 黄沙铺镇


def cap_time(moment: datetime) -> str:
    """A CAP dateTime with its offset (never Z)."""
    return moment.astimezone(CN).replace(microsecond=0).isoformat()


@dataclass
class AreaSpec:
    """One <area> of a generated message."""

    desc: str = "通山县"
    geocodes: list[tuple[str, str]] = field(default_factory=lambda: [("行政区划代码", COUNTY_GEOCODE)])
    polygons: list[str] = field(default_factory=list)
    circles: list[str] = field(default_factory=list)


@dataclass
class InfoSpec:
    """One <info> of a generated message."""

    language: str = "zh-CN"
    event: str = "暴雨"
    urgency: str = "Immediate"
    severity: str = "Severe"
    certainty: str = "Likely"
    event_code: str = "11B03"
    headline: str = "通山县气象台发布暴雨橙色预警信号"
    description: str = "预计未来3小时内我县大部分地区将出现50毫米以上降雨。"
    instruction: str = "请注意防范山洪、地质灾害，远离河道。"
    expires: datetime | None = None
    areas: list[AreaSpec] = field(default_factory=lambda: [AreaSpec()])
    category: str = "Met"

    def xml(self) -> str:
        """The <info> element."""
        areas = "".join(_area(a) for a in self.areas)
        expires = f"<expires>{cap_time(self.expires)}</expires>" if self.expires else ""
        return (
            f"<info><language>{self.language}</language><category>{self.category}</category>"
            f"<event>{escape(self.event)}</event><urgency>{self.urgency}</urgency>"
            f"<severity>{self.severity}</severity><certainty>{self.certainty}</certainty>"
            f"<eventCode><valueName>GB/T 35965.1</valueName><value>{self.event_code}</value></eventCode>"
            f"{expires}<senderName>通山县气象台</senderName><headline>{escape(self.headline)}</headline>"
            f"<description>{escape(self.description)}</description>"
            f"<instruction>{escape(self.instruction)}</instruction>{areas}</info>"
        )


def _area(area: AreaSpec) -> str:
    parts = [f"<areaDesc>{escape(area.desc)}</areaDesc>"]
    parts += [f"<polygon>{p}</polygon>" for p in area.polygons]
    parts += [f"<circle>{c}</circle>" for c in area.circles]
    parts += [f"<geocode><valueName>{n}</valueName><value>{v}</value></geocode>" for n, v in area.geocodes]
    return "<area>" + "".join(parts) + "</area>"


def identifier(n: int, when: datetime) -> str:
    """A GB/T 35965.1 identifier: region code, sender codes, time, sequence."""
    return f"{COUNTY_GEOCODE}0410000_{when.astimezone(CN):%Y%m%d%H%M%S}_{n}"


def cap(
    *,
    ident: str = "421224041000_20260601080000_1",
    sender: str = SENDER,
    sent: datetime | str | None = None,
    status: str = "Actual",
    msg_type: str = "Alert",
    scope: str = "Public",
    references: str = "",
    infos: list[InfoSpec] | None = None,
    namespace: str = "urn:oasis:names:tc:emergency:cap:1.2",
) -> bytes:
    """One CAP message as UTF-8 bytes."""
    sent_text = sent if isinstance(sent, str) else cap_time(sent or datetime.now(UTC))
    refs = f"<references>{references}</references>" if references else ""
    body = "".join(i.xml() for i in (infos if infos is not None else [InfoSpec()]))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><alert xmlns="{namespace}"><identifier>{ident}</identifier>'
        f"<sender>{sender}</sender><sent>{sent_text}</sent><status>{status}</status><msgType>{msg_type}</msgType>"
        f"<scope>{scope}</scope>{refs}{body}</alert>"
    ).encode()


def english_info(**overrides: object) -> InfoSpec:
    """An English info block of the same warning."""
    values: dict[str, object] = {
        "language": "en-US",
        "event": "Rainstorm",
        "headline": "Orange rainstorm warning for Tongshan County",
        "description": "More than 50 mm of rain is expected within 3 hours.",
        "instruction": "Keep away from rivers and slopes.",
    }
    values.update(overrides)
    return InfoSpec(**values)  # type: ignore[arg-type]


def reference(sender: str, ident: str, sent: str) -> str:
    """One references triple."""
    return f"{sender},{ident},{sent}"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""
HOSTILE = {
    "billion_laughs": BILLION_LAUGHS,
    "external_entity": EXTERNAL_ENTITY,
    "external_dtd": EXTERNAL_DTD,
    "parameter_entity": PARAMETER_ENTITY,
}


def oversize(megabytes: int = 10) -> bytes:
    """A well-formed message padded past any sane size."""
    pad = "很" * (megabytes * 1024 * 1024 // 3)
    return cap(infos=[InfoSpec(description=pad)])


AROUND_HUANGSHA = "29.59,114.49 29.62,114.49 29.62,114.52 29.59,114.52 29.59,114.49"
AREAS = {
    "huangsha": AreaSpec(desc="黄沙铺镇", geocodes=[("行政区划代码", HUANGSHA_GEOCODE)]),
    "huangsha_shape": AreaSpec(desc="黄沙铺镇一带", geocodes=[], polygons=[AROUND_HUANGSHA]),
    "dalu": AreaSpec(desc="大路乡", geocodes=[("行政区划代码", "421224205000")]),
    "dalu_circle": AreaSpec(desc="大路乡附近", geocodes=[], circles=["29.45,114.65 2"]),
    "nowhere": AreaSpec(desc="北京东城", geocodes=[("行政区划代码", "110101")]),
}


@dataclass
class Case:
    """One generated message, the area it means and whether it may be played at all."""

    name: str
    data: bytes
    area: str
    drill: bool = False


def generated_corpus(now: datetime) -> list[Case]:
    """Valid, invalid and hostile messages, Chinese and English, with Update/Cancel chains, geocodes and shapes."""
    cases: list[Case] = []
    sent = now - timedelta(minutes=30)
    for n, (area, status, level) in enumerate(
        [
            ("huangsha", "Actual", "红色"),
            ("huangsha_shape", "Actual", "橙色"),
            ("dalu", "Actual", "橙色"),
            ("dalu_circle", "Exercise", "红色"),
            ("huangsha", "Test", "橙色"),
            ("nowhere", "Actual", "红色"),
            ("dalu", "Actual", "黄色"),  # held by the default table
            ("huangsha", "System", "红色"),
            ("dalu", "Draft", "红色"),
        ]
    ):
        zh = InfoSpec(headline=f"通山县气象台发布暴雨{level}预警信号", areas=[AREAS[area]])
        en = english_info(areas=[AREAS[area]])
        data = cap(ident=f"GEN-{n}", sent=sent, status=status, infos=[en, zh] if n % 2 else [zh, en])
        cases.append(Case(f"alert-{n}-{area}-{status}", data, area, drill=status in ("Exercise", "Test")))
        cases.append(Case(f"again-{n}", data, area, drill=status in ("Exercise", "Test")))  # a duplicate
    ref = f"{SENDER},GEN-0,{cap_time(sent)}"
    update = [InfoSpec(headline="暴雨红色预警信号更新：雨势加强", areas=[AREAS["huangsha"]])]
    cases.append(Case("update-0", cap(ident="GEN-0-U", msg_type="Update", references=ref, infos=update), "huangsha"))
    cancel = [InfoSpec(areas=[AREAS["huangsha"]])]
    cases.append(Case("cancel-0", cap(ident="GEN-0-C", msg_type="Cancel", references=ref, infos=cancel), "huangsha"))
    expired = [InfoSpec(expires=now - timedelta(minutes=1), areas=[AREAS["dalu"]])]
    cases.append(Case("expired", cap(ident="GEN-X", infos=expired), "dalu"))
    cases.append(Case("bad-status", cap(ident="GEN-B", status="Real"), "nowhere"))
    cases.extend(Case(f"hostile-{name}", data, "nowhere") for name, data in HOSTILE.items())
    return cases
