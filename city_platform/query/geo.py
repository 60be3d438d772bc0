"""Geo-queries (ETSI GS CIM 009 4.10) and GeoJSON validation (RFC 7946).

``georel`` is one of ``near;maxDistance==d``, ``near;minDistance==d``, ``within``, ``contains``,
``intersects``, ``disjoint``, ``equals``, ``overlaps``; ``geometry`` and ``coordinates`` give the
reference shape; ``geoproperty`` (default ``location``) the attribute tested.

Relations are evaluated with shapely on longitude/latitude.  Distances (in metres) are measured on
a local equirectangular projection centred on the reference shape, which is within a fraction of a
percent of the great-circle distance over city scales.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from city_platform.errors import BadRequestData
from city_platform.limits import check_depth

Georel = Literal["near", "within", "contains", "intersects", "disjoint", "equals", "overlaps"]
GEORELS: frozenset[str] = frozenset(
    {"near", "within", "contains", "intersects", "disjoint", "equals", "overlaps"}
)
GEOMETRIES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
EARTH_RADIUS_M = 6_371_008.8
_MIN_LINE = 2
_MIN_RING = 4
_MAX_DIM = 3


def _position(pos: object, where: str) -> None:
    if not isinstance(pos, list) or not _MIN_LINE <= len(pos) <= _MAX_DIM:
        raise BadRequestData(f"{where}: a position is an array of 2 or 3 numbers, got {pos!r}")
    if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pos):
        raise BadRequestData(f"{where}: position {pos!r} holds a non-number")
    lon, lat = pos[0], pos[1]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise BadRequestData(f"{where}: position {pos!r} is outside longitude/latitude range")


def _positions(coords: object, where: str, minimum: int) -> list[Any]:
    if not isinstance(coords, list) or len(coords) < minimum:
        raise BadRequestData(f"{where}: needs an array of at least {minimum} positions")
    for pos in coords:
        _position(pos, where)
    return coords


def _ring(coords: object, where: str) -> None:
    ring = _positions(coords, where, _MIN_RING)
    if ring[0] != ring[-1]:
        raise BadRequestData(f"{where}: a linear ring must be closed (first == last position)")


def _polygon(coords: object, where: str) -> None:
    if not isinstance(coords, list) or not coords:
        raise BadRequestData(f"{where}: a Polygon is an array of linear rings")
    for ring in coords:
        _ring(ring, where)


def _check_coordinates(kind: str, coords: object, where: str) -> None:
    if kind == "Point":
        _position(coords, where)
    elif kind == "MultiPoint":
        _positions(coords, where, 1)
    elif kind == "LineString":
        _positions(coords, where, _MIN_LINE)
    elif kind == "MultiLineString":
        if not isinstance(coords, list) or not coords:
            raise BadRequestData(f"{where}: a MultiLineString is an array of line strings")
        for line in coords:
            _positions(line, where, _MIN_LINE)
    elif kind == "Polygon":
        _polygon(coords, where)
    else:  # MultiPolygon
        if not isinstance(coords, list) or not coords:
            raise BadRequestData(f"{where}: a MultiPolygon is an array of polygons")
        for poly in coords:
            _polygon(poly, where)


def validate_geometry(value: object) -> None:
    """Raise :class:`BadRequestData` unless ``value`` is a GeoJSON geometry we can store."""
    if not isinstance(value, dict):
        raise BadRequestData("a GeoProperty value must be a GeoJSON geometry object")
    kind = value.get("type")
    if kind == "GeometryCollection":
        members = value.get("geometries")
        if not isinstance(members, list):
            raise BadRequestData("GeometryCollection: 'geometries' must be an array")
        for member in members:
            validate_geometry(member)
        return
    if kind not in GEOMETRIES:
        raise BadRequestData(f"unsupported GeoJSON geometry type {kind!r}")
    if "coordinates" not in value:
        raise BadRequestData(f"{kind}: 'coordinates' is missing")
    _check_coordinates(str(kind), value["coordinates"], str(kind))


def to_shape(value: dict[str, Any]) -> BaseGeometry:
    """A validated GeoJSON geometry as a shapely object."""
    try:
        return shape(value)
    except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise BadRequestData(f"{value.get('type')}: not a usable geometry ({exc})") from None


@dataclass(frozen=True)
class GeoQuery:
    georel: Georel
    reference: BaseGeometry
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None
    _cos_lat: float = field(default=1.0, repr=False)

    def matches(self, geometry: dict[str, Any]) -> bool:
        """True when the stored GeoJSON ``geometry`` stands in ``georel`` to the reference."""
        try:
            validate_geometry(geometry)
            target = to_shape(geometry)
        except BadRequestData:
            return False
        ref = self.reference
        if self.georel == "near":
            distance = self._distance_m(target)
            if self.max_distance is not None and distance > self.max_distance:
                return False
            return not (self.min_distance is not None and distance < self.min_distance)
        relation = {
            "within": target.within,
            "contains": target.contains,
            "intersects": target.intersects,
            "disjoint": target.disjoint,
            "equals": target.equals,
            "overlaps": target.overlaps,
        }[self.georel]
        return bool(relation(ref))

    def _distance_m(self, target: BaseGeometry) -> float:
        ref = self.reference
        if ref.geom_type == "Point" and target.geom_type == "Point":
            return _haversine(ref.x, ref.y, target.x, target.y)
        # Project both on a plane in metres around the reference (equirectangular).
        scale_x = math.radians(1) * EARTH_RADIUS_M * self._cos_lat
        scale_y = math.radians(1) * EARTH_RADIUS_M
        project = _scaler(scale_x, scale_y)
        return float(shapely.transform(target, project).distance(shapely.transform(ref, project)))


def _scaler(sx: float, sy: float) -> Any:
    def project(coords: Any) -> Any:
        return coords * [sx, sy]

    return project


def _haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _parse_georel(text: str) -> tuple[Georel, float | None, float | None]:
    parts = [p.strip() for p in text.split(";")]
    name = parts[0]
    if name not in GEORELS:
        raise BadRequestData(f"georel: unknown relation {name!r}; one of {sorted(GEORELS)}")
    max_d = min_d = None
    for mod in parts[1:]:
        key, sep, raw = mod.partition("==")
        if not sep or key not in {"maxDistance", "minDistance"}:
            raise BadRequestData(
                f"georel: modifier {mod!r} is not maxDistance==<metres> or minDistance==<metres>"
            )
        try:
            dist = float(raw)
        except ValueError:
            raise BadRequestData(f"georel: {key} must be a number of metres, got {raw!r}") from None
        if not math.isfinite(dist) or dist < 0:
            raise BadRequestData(f"georel: {key} must be a non-negative number, got {raw!r}")
        if key == "maxDistance":
            max_d = dist
        else:
            min_d = dist
    if name == "near":
        if max_d is None and min_d is None:
            raise BadRequestData("georel: 'near' needs ;maxDistance==<m> or ;minDistance==<m>")
    elif len(parts) > 1:
        raise BadRequestData(f"georel: {name!r} takes no modifiers")
    return name, max_d, min_d  # type: ignore[return-value]  # checked against GEORELS above


def parse_geoquery(
    *,
    georel: str | None,
    geometry: str | None,
    coordinates: str | list[Any] | None,
    geoproperty: str | None = None,
) -> GeoQuery | None:
    """The geo-query of a request, None when it has none; :class:`BadRequestData` when invalid."""
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    if all(v is None for v in given.values()):
        if geoproperty is not None:
            raise BadRequestData("geoproperty given without georel, geometry and coordinates")
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise BadRequestData(f"geo-query: missing {', '.join(missing)} (4.10 needs all three)")
    assert georel is not None
    assert geometry is not None
    assert coordinates is not None
    rel, max_d, min_d = _parse_georel(georel)
    if geometry not in GEOMETRIES:
        raise BadRequestData(f"geometry: {geometry!r} is not one of {sorted(GEOMETRIES)}")
    coords: object = coordinates
    if isinstance(coordinates, str):
        try:
            coords = json.loads(coordinates)
        except (ValueError, RecursionError):  # RecursionError: [[[... thousands deep
            raise BadRequestData(
                f"coordinates: not a JSON array of positions: {coordinates[:200]!r}"
            ) from None
        check_depth(coords, "coordinates")  # the nesting limit, city_platform/limits.py
    _check_coordinates(geometry, coords, f"coordinates ({geometry})")
    reference = to_shape({"type": geometry, "coordinates": coords})
    centroid = reference.centroid
    return GeoQuery(
        georel=rel,
        reference=reference,
        geoproperty=geoproperty or "location",
        max_distance=max_d,
        min_distance=min_d,
        _cos_lat=math.cos(math.radians(centroid.y)),
    )
