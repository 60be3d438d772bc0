"""Entity selection shared by queries, temporal queries and subscriptions (CIM 009 4.9-4.10).

An :class:`EntitySearch` holds what the backend filters (ids, types, idPattern, attrs) and the
predicates we evaluate ourselves (``q`` and the geo-query).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from city_platform.entities import Entity, check_name, check_uri
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context
from city_platform.query.geo import GeoQuery, parse_geoquery
from city_platform.query.q import QExpr, parse_q
from city_platform.query.regex import RegexError, compile_regex, matches
from city_platform.query.scope import ScopeMatcher, entity_scopes, parse_scope_query
from city_platform.query.typeexpr import Matcher, parse_type_selection
from city_platform.storage.base import EntityFilter


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated query parameter as a list (None when absent)."""
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_types(value: str | None, ctx: Context) -> frozenset[str] | None:
    """The types a ``type`` selection (4.17) names, for the storage's any-of filter (None for
    absent or ``*``); :func:`city_platform.query.typeexpr.parse_type_selection` has the rest."""
    if value is None:
        return None
    selection = parse_type_selection(value, ctx)
    return None if selection is None else selection.any_of


@dataclass(frozen=True)
class EntitySearch:
    where: EntityFilter
    q: QExpr | None = None
    geo: GeoQuery | None = None
    geo_attr: str = ""
    # What the storage's any-of type filter does not decide (';' and groups, 4.17), and scopeQ.
    type_match: Matcher | None = None
    scope_match: ScopeMatcher | None = None

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
        scope_q: str | None = None,
    ) -> EntitySearch:
        if id_pattern is not None:
            # RE2, linear time: a backtracking pattern cannot stall the platform (regex.py).
            try:
                compile_regex(id_pattern)
            except RegexError as exc:
                raise BadRequestData(
                    f"idPattern is not a valid regular expression: {exc}"
                ) from None
        geo = parse_geoquery(
            georel=georel, geometry=geometry, coordinates=coordinates, geoproperty=geoproperty
        )
        selection = parse_type_selection(types, ctx) if types is not None else None
        where = EntityFilter(
            ids=frozenset(check_uri(i, "id") for i in ids) if ids is not None else None,
            types=selection.any_of if selection is not None else None,
            id_pattern=id_pattern,
            attrs=frozenset(ctx.expand(check_name(a, "attrs")) for a in attrs) if attrs else None,
            geo=geo,  # a hint for the backend (PostGIS); matches() below still decides
            geo_attr=ctx.expand(geo.geoproperty) if geo is not None else "",
        )
        return cls(
            where=where,
            q=parse_q(q, ctx.expand) if q else None,
            geo=geo,
            geo_attr=ctx.expand(geo.geoproperty) if geo is not None else "",
            type_match=None if selection is None or selection.exact else selection.matches,
            scope_match=parse_scope_query(scope_q) if scope_q is not None else None,
        )

    def predicate(self) -> Callable[[Entity], bool] | None:
        checks = (self.q, self.geo, self.type_match, self.scope_match)
        return None if all(c is None for c in checks) else self.matches

    def matches(self, entity: Entity) -> bool:
        """True when ``q``, the geo-query, the type expression and ``scopeQ`` hold (the
        backend's any-of filter is not re-checked)."""
        if self.type_match is not None and not self.type_match(entity["type"]):
            return False
        if self.scope_match is not None and not self.scope_match(entity_scopes(entity)):
            return False
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
        if w.id_pattern is not None and not matches(w.id_pattern, entity["id"]):
            return False
        if w.attrs is not None and w.attrs.isdisjoint(entity["attrs"]):
            return False
        return self.matches(entity)
