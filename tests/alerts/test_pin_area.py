"""Pin: an alert's area at its edges (top-most regions across areas, odd trees, circle accuracy, odd polygons)."""

from __future__ import annotations

import math

import pytest

from broadcast.alerts import Area, Circle, SpeakerPoint, resolve
from broadcast.alerts.area import CIRCLE_SEGMENTS, KM_PER_DEGREE, regions_for_geocodes, speakers_in

COUNTY, TOWN, VILLAGE, GRID = "421224000000", "421224104000", "421224104201", "42122410420101"
TREE: dict[str, str | None] = {COUNTY: None, TOWN: COUNTY, VILLAGE: TOWN, GRID: VILLAGE}
CODE = "行政区划代码"


def _geocoded(desc: str, code: str) -> Area:
    return Area(desc=desc, geocodes=((CODE, code),))


def test_a_region_under_one_selected_by_another_area_is_not_listed_again() -> None:
    """County in one area, a village in another: only the county is targeted (the village is inside it)."""
    result = resolve([_geocoded("村", VILLAGE), _geocoded("县", COUNTY)], TREE, [])
    assert result.region_codes == [COUNTY]
    result = resolve([_geocoded("网格", GRID), _geocoded("镇", TOWN)], TREE, [])
    assert result.region_codes == [TOWN]


def test_separate_regions_from_several_areas_are_all_kept() -> None:
    """Two areas naming unrelated regions both count, sorted."""
    tree: dict[str, str | None] = {**TREE, "421224205000": COUNTY}
    result = resolve([_geocoded("镇", TOWN), _geocoded("乡", "421224205000")], tree, [])
    assert result.region_codes == [TOWN, "421224205000"]


def test_a_loop_in_the_region_tree_does_not_hang_the_walk_up() -> None:
    """A corrupt tree whose ancestors point at each other ends the walk; the selected village still counts."""
    tree: dict[str, str | None] = {VILLAGE: "X1", "X1": "X2", "X2": "X1"}
    assert regions_for_geocodes([VILLAGE], tree) == [VILLAGE]
    assert resolve([_geocoded("村", VILLAGE)], tree, []).region_codes == [VILLAGE]


def _at(lat: float, lon: float, km: float, degrees: float) -> tuple[float, float]:
    """The point `km` from (lat, lon) at `degrees` counter-clockwise from east, on the module's flat scale."""
    angle = math.radians(degrees)
    return (
        lat + km * math.sin(angle) / KM_PER_DEGREE,
        lon + km * math.cos(angle) / (KM_PER_DEGREE * math.cos(math.radians(lat))),
    )


@pytest.mark.parametrize("degrees", [360 / CIRCLE_SEGMENTS * k for k in range(1, 8, 2)])
def test_a_circle_is_drawn_with_64_segments(degrees: float) -> None:
    """A speaker at 99.9 % of the radius is inside wherever it lies; at 100.05 % it is outside."""
    lat, lon, radius = 30.0, 114.0, 10.0
    near = SpeakerPoint("near", *_at(lat, lon, radius * 0.999, degrees))
    far = SpeakerPoint("far", *_at(lat, lon, radius * 1.0005, degrees))
    result = resolve([Area(desc="圆", circles=(Circle(lat, lon, radius),))], TREE, [near, far])
    assert result.speaker_ids == ["near"]


def test_a_zero_radius_circle_reaches_the_speaker_at_its_centre_only() -> None:
    """Feeds send radius 0 for a point: the speaker standing there is reached, one 500 m away is not."""
    here = SpeakerPoint("here", 29.6, 114.5)
    near = SpeakerPoint("near", *_at(29.6, 114.5, 0.5, 0))
    result = resolve([Area(desc="点", circles=(Circle(29.6, 114.5, 0),))], TREE, [here, near])
    assert result.speaker_ids == ["here"]


def _polygon(*points: tuple[float, float]) -> Area:
    return Area(desc="多边形", polygons=(points,))


def test_a_figure_eight_polygon_reaches_speakers_in_both_lobes() -> None:
    """A self-intersecting ring covers both of its lobes, not just one (buffer(0) would drop one)."""
    # (lat, lon): a bow tie crossing itself at (1, 1)
    bow_tie = _polygon((0, 0), (2, 2), (0, 2), (2, 0), (0, 0))
    speakers = [SpeakerPoint("left", 1, 0.2), SpeakerPoint("right", 1, 1.8), SpeakerPoint("top", 1.8, 1)]
    assert resolve([bow_tie], TREE, speakers).speaker_ids == ["left", "right"]


def test_a_ring_drawn_twice_still_covers_its_inside() -> None:
    """A ring that goes round its square twice covers the square (an even crossing count must not empty it)."""
    square = [(0.0, 0.0), (0.0, 2.0), (2.0, 2.0), (2.0, 0.0)]
    twice = _polygon(*(square * 2), (0.0, 0.0))
    assert resolve([twice], TREE, [SpeakerPoint("inside", 1, 1)]).speaker_ids == ["inside"]


def test_a_valid_polygon_is_used_as_drawn() -> None:
    """A simple polygon reaches what is inside or on its edge, nothing a little outside."""
    square = _polygon((0, 0), (0, 2), (2, 2), (2, 0), (0, 0))
    speakers = [SpeakerPoint("edge", 0, 1), SpeakerPoint("in", 1, 1), SpeakerPoint("out", -0.001, 1)]
    assert resolve([square], TREE, speakers).speaker_ids == ["edge", "in"]


def test_no_speakers_or_no_shapes_select_nothing() -> None:
    """An empty fleet or an area without shapes gives no speaker."""
    square = _polygon((0, 0), (0, 2), (2, 2), (2, 0), (0, 0))
    assert resolve([square], TREE, []).speaker_ids == []
    assert speakers_in([], [SpeakerPoint("s", 1, 1)]) == []
