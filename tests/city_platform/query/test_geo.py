"""Unit tests of geo-query parsing and evaluation (CIM 009 4.10) and GeoJSON validation."""

from __future__ import annotations

from typing import Any

import pytest

from city_platform.errors import BadRequestData
from city_platform.query.geo import parse_geoquery, validate_geometry

GENEVA = [6.1432, 46.2044]
SQUARE = [[[6.0, 46.0], [6.3, 46.0], [6.3, 46.3], [6.0, 46.3], [6.0, 46.0]]]


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def test_near_max_distance_uses_metres_on_the_sphere() -> None:
    """0.01 degree of longitude at Geneva is about 770 m: inside 1 km, outside 500 m."""
    east = point(GENEVA[0] + 0.01, GENEVA[1])
    near_1k = parse_geoquery(
        georel="near;maxDistance==1000", geometry="Point", coordinates=str(GENEVA)
    )
    near_500 = parse_geoquery(
        georel="near;maxDistance==500", geometry="Point", coordinates=str(GENEVA)
    )
    far_500 = parse_geoquery(
        georel="near;minDistance==500", geometry="Point", coordinates=str(GENEVA)
    )
    assert near_1k is not None
    assert near_1k.matches(east)
    assert near_500 is not None
    assert not near_500.matches(east)
    assert far_500 is not None
    assert far_500.matches(east)


def test_near_distance_to_a_polygon_is_to_its_edge() -> None:
    """A point 0.01 degree of latitude (about 1.1 km) north of a square is near it within 2 km."""
    rel = parse_geoquery(
        georel="near;maxDistance==2000", geometry="Polygon", coordinates=str(SQUARE)
    )
    assert rel is not None
    assert rel.matches(point(6.1, 46.31))
    assert not rel.matches(point(6.1, 46.4))


@pytest.mark.parametrize(
    ("georel", "target", "expected"),
    [
        ("within", point(6.1, 46.1), True),
        ("within", point(7.0, 46.1), False),
        ("intersects", point(6.1, 46.1), True),
        ("disjoint", point(7.0, 46.1), True),
        ("disjoint", point(6.1, 46.1), False),
        ("contains", {"type": "Polygon", "coordinates": SQUARE}, True),
        ("equals", {"type": "Polygon", "coordinates": SQUARE}, True),
        (
            "overlaps",
            {
                "type": "Polygon",
                "coordinates": [[[6.2, 46.2], [6.5, 46.2], [6.5, 46.5], [6.2, 46.5], [6.2, 46.2]]],
            },
            True,
        ),
    ],
)
def test_relations_against_a_polygon(georel: str, target: dict[str, Any], expected: bool) -> None:
    """within/contains/intersects/disjoint/equals/overlaps follow the DE-9IM relations."""
    rel = parse_geoquery(georel=georel, geometry="Polygon", coordinates=str(SQUARE))
    assert rel is not None
    assert rel.matches(target) is expected


def test_no_geo_parameters_means_no_geo_query() -> None:
    """Without georel, geometry and coordinates there is nothing to filter."""
    assert parse_geoquery(georel=None, geometry=None, coordinates=None) is None


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"georel": "near;maxDistance==10", "geometry": "Point"}, "missing coordinates"),
        ({"georel": "close", "geometry": "Point", "coordinates": "[1,2]"}, "unknown relation"),
        ({"georel": "near", "geometry": "Point", "coordinates": "[1,2]"}, "needs ;maxDistance"),
        (
            {"georel": "near;maxDistance==far", "geometry": "Point", "coordinates": "[1,2]"},
            "must be a number",
        ),
        (
            {"georel": "within;maxDistance==1", "geometry": "Polygon", "coordinates": "[]"},
            "takes no modifiers",
        ),
        ({"georel": "within", "geometry": "Circle", "coordinates": "[1,2]"}, "not one of"),
        ({"georel": "within", "geometry": "Point", "coordinates": "[1,"}, "not a JSON array"),
        ({"georel": "within", "geometry": "Point", "coordinates": "[200,2]"}, "outside"),
        (
            {
                "georel": "within",
                "geometry": "Polygon",
                "coordinates": "[[[0,0],[1,0],[1,1],[0,1]]]",
            },
            "must be closed",
        ),
    ],
)
def test_geo_errors_are_bad_request_data_with_detail(params: dict[str, str], fragment: str) -> None:
    """Every malformed geo-query is BadRequestData naming the fault."""
    full: dict[str, str | None] = {"georel": None, "geometry": None, "coordinates": None}
    full.update(params)
    with pytest.raises(BadRequestData) as info:
        parse_geoquery(
            georel=full["georel"], geometry=full["geometry"], coordinates=full["coordinates"]
        )
    assert fragment in info.value.detail


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Point", "coordinates": [1]},
        {"type": "Point", "coordinates": ["1", 2]},
        {"type": "LineString", "coordinates": [[1, 2]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
        {"type": "Circle", "coordinates": [1, 2]},
        {"type": "Point"},
        [1, 2],
    ],
)
def test_validate_geometry_rejects_invalid_geojson(value: object) -> None:
    """Invalid GeoJSON is refused before it is stored."""
    with pytest.raises(BadRequestData):
        validate_geometry(value)


def test_validate_geometry_accepts_every_supported_type() -> None:
    """Point, LineString, Polygon and the Multi* forms are accepted."""
    for value in (
        point(*GENEVA),
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        {"type": "Polygon", "coordinates": SQUARE},
        {"type": "MultiPoint", "coordinates": [[0, 0]]},
        {"type": "MultiPolygon", "coordinates": [SQUARE]},
        {"type": "GeometryCollection", "geometries": [point(0, 0)]},
    ):
        validate_geometry(value)
