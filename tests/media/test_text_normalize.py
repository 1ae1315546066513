"""The text-normalization table: what a person types -> what the loudspeaker should say."""

from __future__ import annotations

import pytest

from media.text import cardinal, decimal, digits, normalize_text, split_sentences

CASES: list[tuple[str, str]] = [
    # clock times
    ("14:30", "十四点三十分"),
    ("08:05", "八点零五分"),
    ("9:00", "九点"),
    ("下午2:15开会", "下午二点十五分开会"),
    ("14：30", "十四点三十分"),
    ("6:30:15", "六点三十分十五秒"),
    ("14:30-16:00", "十四点三十分到十六点"),
    ("8点半集合", "八点半集合"),
    ("12时至14时", "十二时至十四时"),
    # dates and years
    ("2026年11月23日", "二零二六年十一月二十三日"),
    ("2026-11-23", "二零二六年十一月二十三日"),
    ("2026/1/5", "二零二六年一月五日"),
    ("2026.11.23", "二零二六年十一月二十三日"),
    ("2026年", "二零二六年"),
    ("1998年的洪水", "一九九八年的洪水"),
    ("2025-2026年度", "二零二五到二零二六年度"),
    ("11月23日", "十一月二十三日"),
    ("11月23日-25日", "十一月二十三日到二十五日"),
    ("5月1号", "五月一号"),
    # numbers
    ("0", "零"),
    ("10", "十"),
    ("15", "十五"),
    ("101", "一百零一"),
    ("110户", "一百一十户"),
    ("1001", "一千零一"),
    ("15000人", "一万五千人"),
    ("100000", "十万"),
    ("10010", "一万零一十"),
    ("1,500人", "一千五百人"),
    ("3亿", "三亿"),
    ("第3号台风", "第三号台风"),
    ("第2批", "第二批"),
    # 两
    ("2个人", "两个人"),
    ("2万元", "两万元"),
    ("200米", "两百米"),
    ("2000元", "两千元"),
    ("2小时", "两小时"),
    ("22人", "二十二人"),
    # decimals and percentages
    ("3.5米", "三点五米"),
    ("0.5", "零点五"),
    ("12.05", "十二点零五"),
    ("30%", "百分之三十"),
    ("3.5%", "百分之三点五"),
    ("30%-50%", "百分之三十到百分之五十"),
    ("30-50%", "百分之三十到五十"),
    ("PM2.5", "PM二点五"),
    # temperatures
    ("25℃", "二十五摄氏度"),
    ("-5℃", "零下五摄氏度"),
    ("气温-3~5℃", "气温零下三到五摄氏度"),
    ("20-25°C", "二十到二十五摄氏度"),
    ("36.5℃", "三十六点五摄氏度"),
    # wind force, rain, water
    ("8级大风", "八级大风"),
    ("阵风10级", "阵风十级"),
    ("6-7级", "六到七级"),
    ("降雨量50毫米", "降雨量五十毫米"),
    ("100-200mm", "一百到两百毫米"),
    ("水位28.5m", "水位二十八点五米"),
    ("5.2级地震", "五点二级地震"),
    ("流量500m³/s", "流量五百立方米每秒"),
    # speeds and other units
    ("风速20m/s", "风速每秒二十米"),
    ("15米/秒", "每秒十五米"),
    ("120km/h", "每小时一百二十公里"),
    ("时速60公里/小时", "时速六十公里"),
    ("3km", "三公里"),
    ("50kg", "五十公斤"),
    ("24h值守", "二十四小时值守"),
    ("10min", "十分钟"),
    ("300ha", "三百公顷"),
    # phone numbers
    ("13812345678", "幺三八幺二三四五六七八"),
    ("138-1234-5678", "幺三八幺二三四五六七八"),
    ("0715-1234567", "零七幺五幺二三四五六七"),
    ("拨打110报警", "拨打幺幺零报警"),
    ("请拨打12345", "请拨打幺二三四五"),
    ("119火警", "幺幺九火警"),
    ("电话：0715-8123456", "电话：零七幺五八幺二三四五六"),
    ("联系电话5123456", "联系电话五幺二三四五六"),
    ("Tel: 12379", "电话幺二三七九"),
    # ranges
    ("3-5", "三到五"),
    ("3~5天", "三到五天"),
    ("3至5天", "三至五天"),
    # roads and codes
    ("G107国道", "G幺零七国道"),
    ("S201省道", "S二零幺省道"),
    ("No.5", "第五"),
    ("007号", "零零七号"),
    # symbols, emoji and punctuation
    ("🔥注意防火！", "注意防火！"),
    ("★★紧急通知★★", "紧急通知"),
    ("【通知】明天停电", "通知，明天停电"),
    ("注意!!!", "注意！"),
    ("请注意,明天停水.", "请注意，明天停水。"),
    ("村民  请   注意", "村民请注意"),
    ("A&B", "A和B"),
    ("１２３人", "一百二十三人"),
    ("４Ｇ网络", "四G网络"),
]


@pytest.mark.parametrize(("typed", "spoken"), CASES, ids=[c[0] for c in CASES])
def test_normalization_table(typed: str, spoken: str) -> None:
    assert normalize_text(typed) == spoken


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_a_whole_notice() -> None:
    notice = "【紧急通知】受第3号台风影响，2026年8月12日14:00-20:00将有8-10级大风，降雨量100-200mm。请拨打12345咨询🌀。"
    assert normalize_text(notice) == (
        "紧急通知，受第三号台风影响，二零二六年八月十二日十四点到二十点将有八到十级大风，"
        "降雨量一百到两百毫米。请拨打幺二三四五咨询。"
    )


def test_no_digits_survive() -> None:
    samples = ["a1b2", "3.14159", "99999999999999", "-7", "1/2", "5#"]
    for text in samples:
        assert not any(ch.isdigit() for ch in normalize_text(text)), text


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (19, "十九"),
        (20, "二十"),
        (105, "一百零五"),
        (1010, "一千零一十"),
        (20000, "两万"),
        (100_000_000, "一亿"),
        (120_000_005, "一亿两千万零五"),
        (-3, "负三"),
    ],
)
def test_cardinal(n: int, spoken: str) -> None:
    assert cardinal(n) == spoken


def test_digit_readings() -> None:
    assert digits("2026") == "二零二六"
    assert digits("110", yao=True) == "幺幺零"
    assert decimal("3.50") == "三点五零"


def test_split_at_sentence_boundaries() -> None:
    text = "第一句话。第二句话！第三句话？" * 3
    pieces = split_sentences(text, 12)
    assert "".join(pieces) == text
    assert all(len(p) <= 12 for p in pieces)
    assert all(p.endswith(("。", "！", "？")) for p in pieces)


def test_split_long_sentence_at_commas_then_hard() -> None:
    text = "这是一个很长的句子，" * 5 + "没有句号" + "长" * 30
    pieces = split_sentences(text, 20)
    assert "".join(pieces) == text
    assert all(len(p) <= 20 for p in pieces)
    assert pieces[0].endswith("，")


def test_split_keeps_short_text_whole() -> None:
    assert split_sentences("你好。", 200) == ["你好。"]
