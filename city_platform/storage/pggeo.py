"""PostGIS side of the PostgreSQL backend: the geometry rows it keeps, the filters it pushes down.

Every attribute instance whose value is a GeoJSON geometry the platform accepts
(:func:`city_platform.query.geo.validate_geometry`) gets a row in ``geo`` (SRID 4326, GiST
indexed).  A geo-query (CIM 009 4.10) is turned into a condition that keeps every entity that
*can* match: the caller (:class:`city_platform.search.EntitySearch`) still applies the exact
Python test, so the results are those of SQLite, only found without reading every entity.

- within, contains, intersects, equals, overlaps all imply ST_Intersects (same GEOS, planar on
  lon/lat as shapely is; the GiST index answers the bounding-box part, ``&&``); disjoint is not
  pushed down.
- near;maxDistance with a Point reference: ST_DWithin on the sphere (use_spheroid false, the
  haversine of geo.py) with a margin for rounding; other shapes fall through to Python
  (geo.py measures them on an equirectangular plane, not on the sphere).
"""

from __future__ import annotations

from typing import Any

from city_platform.errors import BadRequestData
from city_platform.query.geo import GeoQuery, to_shape, validate_geometry
from city_platform.storage.base import Entity

# Attribute instances that are geometries: (entity id, attribute IRI, WKB).
GeoRow = tuple[str, str, bytes]

_IMPLY_INTERSECTS = {"within", "contains", "intersects", "equals", "overlaps"}


def rows_of(entity: Entity) -> list[GeoRow]:
    out: list[GeoRow] = []
    for attr, instances in entity.get("attrs", {}).items():
        for instance in instances:
            value = instance.get("value") if isinstance(instance, dict) else None
            if not isinstance(value, dict) or "type" not in value:
                continue
            try:
                validate_geometry(value)
                out.append((entity["id"], attr, to_shape(value).wkb))
            except BadRequestData:
                continue  # geo.py's matches() refuses it as well: no row, no match
    return out


def condition(geo: GeoQuery, attr: str, first: int) -> tuple[str, list[Any]]:
    """An SQL condition on ``entities`` (``e``) and its parameters, numbered from ``first``;
    ("", []) when nothing can be pushed down."""
    ref = geo.reference.wkb
    exists = (
        "EXISTS (SELECT 1 FROM geo g WHERE g.tenant = e.tenant AND g.id = e.id "
        f"AND g.prop = ${first} AND "
    )
    if geo.georel in _IMPLY_INTERSECTS:
        # An invalid polygon (a bow tie) makes ST_Intersects raise a TopologyException: those
        # are kept by the bounding box alone and left to Python.
        r = f"ST_GeomFromWKB(${first + 1}, 4326)"
        return (
            exists + f"g.geom && {r} AND (NOT ST_IsValid(g.geom) OR NOT ST_IsValid({r}) "
            f"OR ST_Intersects(g.geom, {r})))",
            [attr, ref],
        )
    if geo.georel == "near" and geo.max_distance is not None and geo.reference.geom_type == "Point":
        reach = geo.max_distance + max(1.0, geo.max_distance * 1e-4)  # rounding, never fewer
        return (
            exists + f"(GeometryType(g.geom) <> 'POINT' OR ST_DWithin(g.geom::geography, "
            f"ST_GeomFromWKB(${first + 1}, 4326)::geography, ${first + 2}, false)))",
            [attr, ref, reach],
        )
    return "", []
