"""Area: administrative geocodes select regions by code prefix; polygons and circles select speakers."""

from __future__ import annotations

import pytest

from broadcast.alerts import SpeakerPoint, parse, resolve
from broadcast.alerts.area import code_prefix, regions_for_geocodes
from tests.alerts.corpus import AreaSpec, InfoSpec, cap

COUNTY, HUANGSHA, DALU = "421224000000", "421224104000", "421224205000"
VILLAGE = "421224104201"
TREE: dict[str, str | None] = {
    COUNTY: None,
    HUANGSHA: COUNTY,
    DALU: COUNTY,
    VILLAGE: HUANGSHA,
    VILLAGE + "01": VILLAGE,
    "421224205201": DALU,
    "42122420520101": "421224205201",
}
# Two speakers near 黄沙铺镇 and one near 大路乡 (about 20 km apart)
SPEAKERS = [
    SpeakerPoint("spk-h1", 29.60, 114.50),
    SpeakerPoint("spk-h2", 29.61, 114.51),
    SpeakerPoint("spk-d1", 29.45, 114.65),
]
AROUND_HUANGSHA = "29.55,114.45 29.65,114.45 29.65,114.55 29.55,114.55 29.55,114.45"


def _areas(*areas: AreaSpec):
    return parse(cap(infos=[InfoSpec(areas=list(areas))])).infos[0].areas


@pytest.mark.parametrize(
    ("code", "prefix"),
    [
        ("421224", "421224"),
        ("421224000000", "421224"),
        ("421224104000", "421224104"),
        ("421224104201", "421224104201"),
        ("42122410420101", "42122410420101"),
        ("420000", "42"),
        ("11B03", None),
        ("4212", None),
    ],
)
def test_code_prefix(code: str, prefix: str | None) -> None:
    assert code_prefix(code) == prefix


def test_a_county_code_selects_everything_below_it_once() -> None:
    assert regions_for_geocodes(["421224"], TREE) == [COUNTY]
    assert regions_for_geocodes(["420000"], TREE) == [COUNTY]  # the province holds our county
    assert regions_for_geocodes(["421224104000"], TREE) == [HUANGSHA]
    assert regions_for_geocodes(["421224104000", VILLAGE], TREE) == [HUANGSHA]
    assert regions_for_geocodes(["421224205000", "421224104201"], TREE) == [VILLAGE, DALU]
    assert regions_for_geocodes(["110101"], TREE) == []  # Beijing: not ours


def test_only_the_configured_geocode_names_count() -> None:
    areas = _areas(AreaSpec(geocodes=[("FIPS6", "421224"), ("行政区划代码", HUANGSHA)]))
    assert resolve(areas, TREE, SPEAKERS).region_codes == [HUANGSHA]
    areas = _areas(AreaSpec(geocodes=[("县代码", "421224")]))
    assert resolve(areas, TREE, SPEAKERS).empty
    assert resolve(areas, TREE, SPEAKERS, geocode_names=["县代码"]).region_codes == [COUNTY]


def test_a_polygon_selects_speakers_inside_it_only() -> None:
    areas = _areas(AreaSpec(geocodes=[("行政区划代码", "421224")], polygons=[AROUND_HUANGSHA]))
    result = resolve(areas, TREE, SPEAKERS)
    # the shape wins over the county geocode of the same area: nothing outside the polygon
    assert (result.region_codes, result.speaker_ids) == ([], ["spk-h1", "spk-h2"])


def test_a_circle_selects_by_distance() -> None:
    # 1.5 km around spk-h1 reaches spk-h2 (about 1.45 km away) but not with 1.3 km
    assert resolve(_areas(AreaSpec(geocodes=[], circles=["29.60,114.50 1.5"])), TREE, SPEAKERS).speaker_ids == [
        "spk-h1",
        "spk-h2",
    ]
    assert resolve(_areas(AreaSpec(geocodes=[], circles=["29.60,114.50 1.3"])), TREE, SPEAKERS).speaker_ids == [
        "spk-h1"
    ]


def test_an_area_that_selects_nothing_is_unresolved() -> None:
    far = "39.9,116.3 40.0,116.3 40.0,116.4 39.9,116.3"
    result = resolve(
        _areas(AreaSpec(desc="北京", geocodes=[("行政区划代码", "110101")], polygons=[far])), TREE, SPEAKERS
    )
    assert result.empty
    assert result.unmatched == ["北京"]
    result = resolve(_areas(AreaSpec(desc="无坐标", geocodes=[])), TREE, SPEAKERS)
    assert result.empty


def test_several_areas_add_up() -> None:
    areas = _areas(
        AreaSpec(desc="大路乡", geocodes=[("行政区划代码", DALU)]),
        AreaSpec(desc="黄沙", geocodes=[], polygons=[AROUND_HUANGSHA]),
    )
    result = resolve(areas, TREE, SPEAKERS)
    assert result.targets == [DALU, "spk-h1", "spk-h2"]
    assert result.unmatched == []
