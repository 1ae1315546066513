"""Chinese text normalization for speech: what the TTS should say for what a person typed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from .numbers import cardinal, decimal, digits, number

_NUM = r"\d+(?:\.\d+)?"
_RANGE = r"[-~～至到]"
_CN_NUM = "零一二三四五六七八九十两百千万亿点幺"

# full-width ASCII (digits, letters, %, +, etc.) -> half-width; Chinese punctuation is kept
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in "，：；！？（）"}
_FULLWIDTH.update({ord("～"): "~", ord("－"): "-", ord("—"): "-", ord("–"): "-", ord("　"): " "})

_UNITS: dict[str, str] = {
    "km²": "平方公里",
    "km2": "平方公里",
    "m²": "平方米",
    "m2": "平方米",
    "m³": "立方米",
    "m3": "立方米",
    "mm": "毫米",
    "cm": "厘米",
    "km": "公里",
    "kg": "公斤",
    "kwh": "千瓦时",
    "kw": "千瓦",
    "kv": "千伏",
    "mg": "毫克",
    "ml": "毫升",
    "ha": "公顷",
    "min": "分钟",
    "m": "米",
    "g": "克",
    "t": "吨",
    "l": "升",
    "h": "小时",
    "s": "秒",
}
_UNIT_RE = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))

# words after which a number is a phone number (read digit by digit, 1 as 幺)
_PHONE_CUES = "电话|拨打|热线|致电|号码|手机|联系方式|联系|报警|求助|呼叫|咨询|举报|值班"
_SERVICE_WORDS = "报警|急救|火警|热线|服务|平台|电话|求助|举报"
# measure words counted with 两 rather than 二
_LIANG_WORDS = "个人次天小时名位条辆户台只头场件家所座种批架艘处周年月"

_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    (r"(?i)\btel\.?\s*[:：]?", "电话"),
    (r"(?i)\bfax\.?\s*[:：]?", "传真"),
    (r"(?i)\be-?mail\b", "邮箱"),
    (r"(?i)\bno\.\s*(?=\d)", "第"),
    (r"&", "和"),
    (r"(?<=\d)\s*\+\s*(?=\d)", "加"),
    (r"=", "等于"),
)

_KEEP_SYMBOLS = set("%℃°‰.:-~/+=&,，。、！？；：“”‘’《》（）()…·—")


def _strip_unsupported(text: str) -> str:
    """Drop emoji, pictographs and decorative symbols; keep CJK, Latin, digits and useful signs."""
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "【[":
            continue
        if ch in "】]!?;":
            out.append({"】": "，", "]": "，", "!": "！", "?": "？", ";": "；"}[ch])
        elif (
            ch.isalnum()
            or ch.isspace()
            or ch in _KEEP_SYMBOLS
            or 0x3000 <= cp <= 0x303F  # CJK punctuation
            or 0x4E00 <= cp <= 0x9FFF
            or 0x3400 <= cp <= 0x4DBF
        ):
            out.append(ch)
        elif unicodedata.category(ch).startswith("S") or unicodedata.category(ch) in ("Cf", "Co", "Cn", "Mn"):
            continue  # emoji, dingbats, arrows, zero-width joiners, variation selectors
        else:
            out.append(" ")
    return "".join(out)


def _phone(m: re.Match[str]) -> str:
    return digits(m.group(0), yao=True)


def _temperature(value: str) -> str:
    return ("零下" + number(value[1:])) if value.startswith("-") else number(value)


def _date(m: re.Match[str]) -> str:
    year, month, day = m.group(1), m.group(2), m.group(3)
    return f"{digits(year)}年{cardinal(int(month))}月{cardinal(int(day))}日"


def _time(m: re.Match[str]) -> str:
    h, mi, s = int(m.group(1)), int(m.group(2)), m.group(3)
    spoken = cardinal(h, liang=False) + "点"
    if mi or s:
        spoken += ("零" if mi < 10 and mi else "") + cardinal(mi, liang=False) + "分"
    if s:
        spoken += cardinal(int(s), liang=False) + "秒"
    return spoken


def _unit(m: re.Match[str]) -> str:
    a, b, unit = m.group(1), m.group(2), _UNITS[m.group(3).lower()]
    return number(a) + ("到" + number(b) if b else "") + unit


def _speed(per: str, unit: str) -> Callable[[re.Match[str]], str]:
    def repl(m: re.Match[str]) -> str:
        a, b = m.group(1), m.group(2)
        return per + number(a) + ("到" + number(b) if b else "") + unit

    return repl


def _percent_range(m: re.Match[str]) -> str:
    return f"百分之{number(m.group(1))}到百分之{number(m.group(2))}"


def normalize_text(text: str) -> str:
    """Rewrite TEXT so a Mandarin TTS reads it right: numbers, dates, times, units, phones, symbols."""
    t = unicodedata.normalize("NFC", text).translate(_FULLWIDTH)
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = _strip_unsupported(t)
    t = re.sub(r"(?<=\d)：(?=\d)", ":", t)
    t = re.sub(r"(?<=\d)[，,](?=\d{3}(?!\d))", "", t)  # thousands separators
    t = re.sub(r"°\s*[Cc]\b", "℃", t)
    for pattern, repl in _ABBREVIATIONS:
        t = re.sub(pattern, repl, t)

    # phone numbers, before anything reads them as quantities
    t = re.sub(r"(?<!\d)1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)", _phone, t)
    t = re.sub(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)", _phone, t)
    t = re.sub(
        rf"({_PHONE_CUES})([:：为是]?\s*)(\d{{3,12}})(?![\d.%])",
        lambda m: m.group(1) + m.group(2).strip() + digits(m.group(3), yao=True),
        t,
    )
    t = re.sub(rf"(?<![\d.])(1\d{{2,4}}|9\d{{4}})(?=(?:{_SERVICE_WORDS}))", _phone, t)
    # road numbers: G107国道 -> G幺零七国道
    t = re.sub(
        r"(?<![A-Za-z])([GSXYZ])(\d{1,4})(?=国道|省道|县道|乡道|高速|线)",
        lambda m: m.group(1) + digits(m.group(2), yao=True),
        t,
    )

    # dates and years
    t = re.sub(r"(?<!\d)(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})(?:日|号|(?!\d))", _date, t)
    t = re.sub(
        r"(?<!\d)(\d{4})\s*" + _RANGE + r"\s*(\d{4})年", lambda m: f"{digits(m.group(1))}到{digits(m.group(2))}年", t
    )
    t = re.sub(r"(?<![\d.])(\d{4})(?=年(?!级))", lambda m: digits(m.group(1)), t)
    t = re.sub(r"(?<=[日号月年])\s*[-~～]\s*(?=\d)", "到", t)

    # clock times
    t = re.sub(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)", _time, t)
    t = re.sub(rf"(?<=[点分秒])\s*[-~～]\s*(?=[{_CN_NUM}])", "到", t)

    # temperatures
    t = re.sub(
        rf"(-?{_NUM})\s*{_RANGE}\s*(-?{_NUM})\s*(?:℃|度)",
        lambda m: f"{_temperature(m.group(1))}到{_temperature(m.group(2))}摄氏度",
        t,
    )
    t = re.sub(rf"(-?{_NUM})\s*℃", lambda m: _temperature(m.group(1)) + "摄氏度", t)
    t = t.replace("℃", "摄氏度")

    # percentages
    t = re.sub(rf"({_NUM})\s*%\s*{_RANGE}\s*({_NUM})\s*%", _percent_range, t)
    t = re.sub(rf"({_NUM})\s*{_RANGE}\s*({_NUM})\s*%", lambda m: f"百分之{number(m.group(1))}到{number(m.group(2))}", t)
    t = re.sub(rf"({_NUM})\s*%", lambda m: "百分之" + number(m.group(1)), t)
    t = re.sub(rf"({_NUM})\s*‰", lambda m: "千分之" + number(m.group(1)), t)

    # speeds and flows (before plain units, which would eat the "km")
    rng = rf"({_NUM})(?:\s*{_RANGE}\s*({_NUM}))?\s*"
    kmh = r"(?:km/h|km/小时|公里/小时|千米/小时|公里每小时)"
    t = re.sub(r"(?<=时速)\s*" + rng + kmh, _speed("", "公里"), t)
    t = re.sub(rng + kmh, _speed("每小时", "公里"), t)
    t = re.sub(rng + r"(?:m/s|米/秒|米每秒)", _speed("每秒", "米"), t)
    t = re.sub(rng + r"(?:m³/s|m3/s|立方米/秒)", _speed("", "立方米每秒"), t)
    t = re.sub(rng + rf"({_UNIT_RE})(?![A-Za-z])", _unit, t)

    # counted things: 2个 -> 两个, 2万 -> 两万
    t = re.sub(rf"(?<![\d.第])2(?=[万亿千百]|(?:{'|'.join(_LIANG_WORDS)}))", "两", t)
    # remaining ranges of plain numbers: 3-5级 -> 三到五级
    t = re.sub(
        rf"(?<![\d.])({_NUM})\s*[-~～]\s*({_NUM})(?![\d.])", lambda m: f"{number(m.group(1))}到{number(m.group(2))}", t
    )
    # signed numbers where a minus is plainly meant
    t = re.sub(rf"(?<![\w.])-({_NUM})", lambda m: "负" + number(m.group(1)), t)
    t = re.sub(r"\d+(?:\.\d+)?", lambda m: decimal(m.group(0)) if "." in m.group(0) else number(m.group(0)), t)
    return _tidy(t)


def _tidy(t: str) -> str:
    """Chinese punctuation, no stray symbols, single spaces only between Latin words."""
    t = re.sub(r"(?<=[\u4e00-\u9fff])\s*,\s*", "，", t)
    t = re.sub(r"(?<=[\u4e00-\u9fff])\s*:\s*", "：", t)
    t = re.sub(r"(?<=[\u4e00-\u9fff])\.(?!\w)", "。", t)
    t = re.sub(r"[/~+\-_]", " ", t)
    t = re.sub(r"\s+", " ", t)
    t = re.sub(r"\s*([，。、！？；：“”《》（）…])\s*", r"\1", t)
    t = re.sub(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])", "", t)
    t = re.sub(r"(?<=[\u4e00-\u9fff])\s+(?=[A-Za-z])|(?<=[A-Za-z])\s+(?=[\u4e00-\u9fff])", "", t)
    t = re.sub(r"([，。！？；、])[，。！？；、]+", r"\1", t)
    t = re.sub(r"^[，。！？；、：\s]+", "", t)
    t = t.replace("%", "").replace("°", "度").replace("‰", "")
    return t.strip()
