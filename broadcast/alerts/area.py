"""Which of our regions and speakers a CAP info's areas cover: geocodes by code prefix, shapes by Shapely."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shapely import Point, Polygon, STRtree, affinity, make_valid
from shapely.geometry.base import BaseGeometry

from broadcast.alerts.model import Area, Circle

logger = logging.getLogger(__name__)
DEFAULT_GEOCODE_NAMES = ("行政区划代码", "CPEAS Geographic Code")
# GB/T 2260 + 统计用区划代码 segments: province 2, city 2, county 2, township 3, village 3; grids add digits.
SEGMENTS = (2, 2, 2, 3, 3)
KM_PER_DEGREE = 111.32
CIRCLE_SEGMENTS = 64


@dataclass(frozen=True)
class SpeakerPoint:
    """A speaker with coordinates (WGS 84)."""

    id: str
    lat: float
    lon: float


@dataclass
class AreaResult:
    """Region codes (top-most selected) and speaker ids an alert reaches; empty means unresolved."""

    region_codes: list[str] = field(default_factory=list)
    speaker_ids: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # area descriptions that selected nothing

    @property
    def empty(self) -> bool:
        """True when nothing was selected: the alert must be held (area_unresolved)."""
        return not self.region_codes and not self.speaker_ids

    @property
    def targets(self) -> list[str]:
        """Region codes then speaker ids, the form a broadcast's targets take."""
        return self.region_codes + self.speaker_ids


def code_prefix(code: str) -> str | None:
    """The significant prefix of an administrative code: trailing all-zero segments dropped.

    421224 → 421224 (a county), 421224000000 → 421224, 421224104000 → 421224104, 420000 → 42.
    None when the value is not a code of 6 or more digits.
    """
    code = code.strip()
    if not code.isdigit() or len(code) < 6:
        return None
    parts, rest = [], code
    for size in SEGMENTS:
        if not rest:
            break
        parts.append(rest[:size])
        rest = rest[size:]
    if rest:  # grid digits beyond the village: the whole code is significant
        return code
    while parts and set(parts[-1]) == {"0"}:
        parts.pop()
    return "".join(parts) or None


def regions_for_geocodes(values: Iterable[str], tree: Mapping[str, str | None]) -> list[str]:
    """Our regions selected by administrative codes (`tree`: code → parent code), top-most only."""
    prefixes = {p for p in (code_prefix(v) for v in values) if p}
    selected = {code for code in tree if any(code.startswith(p) for p in prefixes)}
    return sorted(code for code in selected if not _has_selected_ancestor(code, tree, selected))


def _has_selected_ancestor(code: str, tree: Mapping[str, str | None], selected: set[str]) -> bool:
    seen = {code}
    parent = tree.get(code)
    while parent is not None and parent not in seen:
        if parent in selected:
            return True
        seen.add(parent)
        parent = tree.get(parent)
    return False


def circle_shape(circle: Circle) -> BaseGeometry:
    """A circle as a lon/lat polygon: a buffer in kilometres around the centre, scaled back to degrees."""
    cos_lat = max(math.cos(math.radians(circle.lat)), 1e-6)
    disc = Point(0.0, 0.0).buffer(max(circle.radius_km, 1e-6), quad_segs=CIRCLE_SEGMENTS // 4)
    scaled = affinity.scale(disc, 1 / (KM_PER_DEGREE * cos_lat), 1 / KM_PER_DEGREE, origin=(0, 0))
    return affinity.translate(scaled, circle.lon, circle.lat)


def area_shapes(area: Area) -> list[BaseGeometry]:
    """The area's polygons and circles as Shapely shapes in (lon, lat).

    A self-intersecting ring (a figure eight) is repaired with `make_valid`, which keeps every lobe;
    `buffer(0)` would keep only one of them and silently drop the speakers in the other.
    """
    shapes: list[BaseGeometry] = []
    for points in area.polygons:
        polygon = Polygon([(lon, lat) for lat, lon in points])
        shapes.append(polygon if polygon.is_valid else make_valid(polygon))
    shapes.extend(circle_shape(c) for c in area.circles)
    return shapes


def speakers_in(shapes: list[BaseGeometry], speakers: list[SpeakerPoint]) -> list[str]:
    """Ids of speakers inside (or on the edge of) any shape."""
    if not shapes or not speakers:
        return []
    points = [Point(s.lon, s.lat) for s in speakers]
    index = STRtree(points)
    hits: set[int] = set()
    for shape in shapes:
        hits.update(int(i) for i in index.query(shape, predicate="intersects"))
    return sorted(speakers[i].id for i in hits)


def resolve(
    areas: Iterable[Area],
    tree: Mapping[str, str | None],
    speakers: list[SpeakerPoint],
    geocode_names: Iterable[str] = DEFAULT_GEOCODE_NAMES,
) -> AreaResult:
    """Targets of an info's areas: shapes select speakers by coordinates; an area without shapes uses geocodes.

    An area that has shapes is taken by its shapes alone (they are the precise part), so no speaker outside
    them is reached even when a geocode of the same area names a larger region.
    """
    names = set(geocode_names)
    result = AreaResult()
    regions: set[str] = set()
    speaker_ids: set[str] = set()
    for area in areas:
        shapes = area_shapes(area)
        if shapes:
            found = speakers_in(shapes, speakers)
            speaker_ids.update(found)
        else:
            found = regions_for_geocodes((v for n, v in area.geocodes if n in names), tree)
            regions.update(found)
        if not found:
            result.unmatched.append(area.desc)
    top = sorted(c for c in regions if not _has_selected_ancestor(c, tree, regions))
    result.region_codes = top
    result.speaker_ids = sorted(speaker_ids)
    return result
