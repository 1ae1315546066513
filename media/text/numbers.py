"""Reading numbers in Mandarin: cardinals, decimals and digit strings."""

from __future__ import annotations

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿", "万亿")


def digits(text: str, *, yao: bool = False) -> str:
    """Read every digit on its own ("2026" -> 二零二六); YAO reads 1 as 幺 (phone numbers, codes)."""
    out = []
    for ch in text:
        if ch.isdigit():
            out.append("幺" if yao and ch == "1" else DIGITS[int(ch)])
    return "".join(out)


def _section(n: int, liang: bool) -> str:
    """0 < n < 10000, with inner zeros read once (1001 -> 一千零一); LIANG: 2000 -> 两千."""
    out = []
    zero = False
    for pos in (3, 2, 1, 0):
        d = n // 10**pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        digit = "两" if liang and d == 2 and pos == 3 else DIGITS[d]
        out.append(digit + _SMALL_UNITS[pos])
    return "".join(out)


def cardinal(n: int, *, liang: bool = True) -> str:
    """A whole number as spoken: 15000 -> 一万五千, 10 -> 十, 200 -> 两百 (LIANG for a leading 2)."""
    if n < 0:
        return "负" + cardinal(-n, liang=liang)
    if n == 0:
        return "零"
    if n >= 10**16:
        return digits(str(n))
    groups = []
    rest = n
    while rest:
        groups.append(rest % 10000)
        rest //= 10000
    out = []
    need_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out.append("零")
        need_zero = False
        section = _section(g, liang)
        if liang and g == 2 and i > 0:
            section = "两"  # 两万, 两亿
        out.append(section + _BIG_UNITS[i])
    text = "".join(out)
    if text.startswith("一十"):
        text = text[1:]  # 10-19 at the head of a number: 十五, 十万
    if liang and text.startswith("二") and len(text) > 1 and text[1] == "百":
        text = "两" + text[1:]
    return text


def decimal(text: str) -> str:
    """A decimal as spoken: "3.50" -> 三点五零, "0.5" -> 零点五."""
    whole, _, frac = text.partition(".")
    head = cardinal(int(whole), liang=False) if whole else "零"
    return head + ("点" + digits(frac) if frac else "")


def number(text: str) -> str:
    """Any plain number string: thousands commas dropped, leading zeros and very long ones by digit."""
    text = text.replace(",", "")
    negative = text.startswith("-")
    text = text.lstrip("-")
    if "." in text:
        spoken = decimal(text)
    elif (len(text) > 1 and text.startswith("0")) or len(text) > 12:
        spoken = digits(text)
    else:
        spoken = cardinal(int(text))
    return ("负" if negative else "") + spoken
