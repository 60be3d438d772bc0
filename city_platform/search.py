"""Entity selection shared by queries, temporal queries and subscriptions (CIM 009 4.9-4.10).

An :class:`EntitySearch` holds what the backend filters (ids, types, idPattern, attrs) and the
predicates we evaluate ourselves (``q`` and the geo-query).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from city_platform.entities import Entity, check_name, check_uri
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context
from city_platform.query.geo import GeoQuery, parse_geoquery
from city_platform.query.q import QExpr, parse_q
from city_platform.storage.base import EntityFilter


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated query parameter as a list (None when absent)."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_types(value: str | None, ctx: Context) -> frozenset[str] | None:
    """``type`` as a list or a disjunction (``A,B`` or ``A|B``, 4.17); IRIs as expanded."""
    if value is None:
        return None
    names = [t.strip("() ") for t in re.split(r"[,|]", value) if t.strip("() ")]
    if not names:
        raise BadRequestData("type: empty list of entity types")
    if ";" in value:
        raise BadRequestData("type: conjunctions (';') of entity types are not supported")
    return frozenset(ctx.expand(check_name(n, "entity type")) for n in names)


@dataclass(frozen=True)
class EntitySearch:
    where: EntityFilter
    q: QExpr | None = None
    geo: GeoQuery | None = None
    geo_attr: str = ""

    @classmethod
    def build(
        cls,
        ctx: Context,
        *,
        ids: Sequence[str] | None = None,
        types: str | None = None,
        id_pattern: str | None = None,
        attrs: Sequence[str] | None = None,
        q: str | None = None,
        georel: str | None = None,
        geometry: str | None = None,
        coordinates: str | list[Any] | None = None,
        geoproperty: str | None = None,
    ) -> EntitySearch:
        if id_pattern is not None:
            try:
                re.compile(id_pattern)
            except re.error as exc:
                raise BadRequestData(
                    f"idPattern is not a valid regular expression: {exc}"
                ) from None
        geo = parse_geoquery(
            georel=georel, geometry=geometry, coordinates=coordinates, geoproperty=geoproperty
        )
        where = EntityFilter(
            ids=frozenset(check_uri(i, "id") for i in ids) if ids is not None else None,
            types=parse_types(types, ctx),
            id_pattern=id_pattern,
            attrs=frozenset(ctx.expand(check_name(a, "attrs")) for a in attrs) if attrs else None,
        )
        return cls(
            where=where,
            q=parse_q(q, ctx.expand) if q else None,
            geo=geo,
            geo_attr=ctx.expand(geo.geoproperty) if geo is not None else "",
        )

    def predicate(self) -> Callable[[Entity], bool] | None:
        if self.q is None and self.geo is None:
            return None
        return self.matches

    def matches(self, entity: Entity) -> bool:
        """True when ``q`` and the geo-query both hold (the backend filter is not re-checked)."""
        if self.q is not None and not self.q.matches(entity):
            return False
        if self.geo is not None:
            instances = entity["attrs"].get(self.geo_attr)
            if not instances:
                return False
            return any(
                isinstance(i.get("value"), dict) and self.geo.matches(i["value"]) for i in instances
            )
        return True

    def matches_fully(self, entity: Entity) -> bool:
        """Also check the backend-level filter (used by subscriptions on single entities)."""
        w = self.where
        if w.ids is not None and entity["id"] not in w.ids:
            return False
        if w.types is not None and w.types.isdisjoint(entity["type"]):
            return False
        if w.id_pattern is not None and not re.search(w.id_pattern, entity["id"]):
            return False
        if w.attrs is not None and w.attrs.isdisjoint(entity["attrs"]):
            return False
        return self.matches(entity)
