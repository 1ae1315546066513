"""Every one of the 30 real CAP messages parses, or is refused with a precise reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from broadcast.alerts import AlertError, PolicyTable, decide, parse

CAP_REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cap-real"

# file prefix → (status, msgType, number of infos) when accepted, or the refusal code
EXPECTED: dict[str, tuple[str, str, int] | str] = {
    "01": ("Actual", "Alert", 1),
    "02": ("Actual", "Update", 1),
    "03": ("Actual", "Alert", 2),
    "04": ("Actual", "Alert", 1),  # CAP 1.1 namespace; its empty <polygon> is ignored with a warning
    "05": ("Actual", "Cancel", 0),
    "06": ("Actual", "Alert", 1),  # 103 KB with embedded audio: under the 256 KB cap
    "07": ("Actual", "Alert", 1),
    "08": ("Actual", "Alert", 1),  # ISO-8859-1
    "09": ("Actual", "Alert", 2),  # cap: prefix
    "10": ("Actual", "Update", 2),
    "11": ("Test", "Alert", 1),
    "12": ("Actual", "Update", 1),
    "13": ("Actual", "Alert", 2),
    "14": ("Actual", "Alert", 1),  # non-CAP elements inside <area> ignored with warnings
    "15": ("Actual", "Alert", 1),  # UTF-8 byte-order mark
    "16": ("Actual", "Alert", 1),
    "17": ("Actual", "Update", 1),
    "18": ("Actual", "Cancel", 1),
    "19": ("Test", "Alert", 1),  # CRLF
    "20": ("Actual", "Update", 5),
    "21": ("Actual", "Update", 2),
    "22": ("Actual", "Update", 3),
    "23": ("Actual", "Alert", 2),
    "24": ("Actual", "Update", 3),
    "25": ("Actual", "Alert", 2),
    "26": ("Actual", "Update", 8),
    "27": ("Actual", "Alert", 1),
    "28": "alert.implausible_time",  # Buddhist-Era year 2568 in <sent>
    "29": ("Actual", "Cancel", 0),
    "30": ("Actual", "Alert", 1),
}


def _files() -> list[Path]:
    return sorted(CAP_REAL.glob("*.xml")) if CAP_REAL.is_dir() else []


def test_the_corpus_is_complete() -> None:
    if not CAP_REAL.is_dir():
        pytest.skip("the shared cap-real corpus is not on this machine")
    assert sorted(p.name[:2] for p in _files()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name[:2])
def test_real_message(path: Path) -> None:
    expected = EXPECTED[path.name[:2]]
    if isinstance(expected, str):
        with pytest.raises(AlertError) as caught:
            parse(path.read_bytes())
        assert caught.value.code == expected
        assert caught.value.zh
        assert caught.value.en
        return
    alert = parse(path.read_bytes())
    assert (alert.status, alert.msg_type, len(alert.infos)) == expected
    assert alert.identifier
    assert alert.sender
    assert alert.sent.tzinfo is not None
    # every accepted message gets a decision without error, far in the future (expired) and at its own time
    table = PolicyTable()
    for now in (alert.sent, datetime(2200, 1, 1, tzinfo=UTC)):
        decision = decide(alert, now=now, duplicate=False, table=table)
        assert decision.action in ("broadcast", "held", "ignored", "cancelled", "updated")


def test_real_details() -> None:
    if not CAP_REAL.is_dir():
        pytest.skip("the shared cap-real corpus is not on this machine")
    read = {p.name[:2]: parse(p.read_bytes()) for p in _files() if p.name[:2] != "28"}
    assert read["04"].version == "1.1"
    assert "empty <polygon> ignored" in read["04"].warnings
    assert any("unknown element <Polygon>" in w for w in read["14"].warnings)
    assert read["10"].references[1].identifier == "2.49.0.1.124.60f31a3a.2012"
    assert read["18"].references[0].key == read["17"].key  # the cancel names the update before it
    assert read["02"].infos[0].areas[0].circles[0].radius_km == 0
    assert len(read["27"].infos[0].areas[0].polygons) == 6
    zh = next(i for i in read["21"].infos if i.language == "zh-CN")
    assert zh.areas[0].geocodes[0][0] == "CPEAS Geographic Code"
