"""Entity representations beyond the plain normalized/concise/simplified JSON forms:

- Linked Entity Retrieval, ``join=inline|flat`` and ``joinLevel`` (CIM 009 4.5.23, 5.7.1,
  5.7.2): with ``inline`` the Entity a Relationship points at is added to the Relationship as
  its ``entity`` member (``entityList`` for a ListRelationship; in the simplified form the
  Entity replaces the object's URI), with ``flat`` the linked Entities are returned once each
  as further members of the answer's array.  ``joinLevel`` (default 1) is how many hops are
  followed; ``join=@none`` is no join.  An Entity already met in the answer's tree (or named
  in ``containedBy``) is not inlined or returned again (5.7.1.5), so loops end.
- ``lang`` (4.15, 5.7.1, 5.7.2; LanguageProperty 4.5.18): each LanguageProperty is returned
  as a Property whose ``value`` is the string of the best-matching language, with a ``lang``
  member naming it (``@none`` included).  ``lang`` is a list of language ranges with optional
  ``;q=`` weights (the HTTP Accept-Language syntax); ``*`` matches any language.  When no
  language matches, the ``@none`` string, else the first one (4.15 leaves the choice open).
- GeoJSON, ``Accept: application/geo+json`` (4.5.16, 4.5.17, 6.3.15): Retrieve answers a
  Feature, Query a FeatureCollection.  The Feature's geometry is the default instance of
  ``geometryProperty`` (``location`` when absent), ``null`` when the Entity lacks it or it
  does not hold a GeoJSON geometry; ``properties`` is the Entity without its ``id``, in the
  requested (normalized, concise or simplified) form; ``@context`` is a member of the Feature
  (Retrieve) or of the FeatureCollection (Query), not of each Feature, unless ``Prefer:
  body=json`` asks for the Link header alone (5.7.1.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from fastapi import Request

from city_platform.api.negotiation import GEO_JSON
from city_platform.api.shaping import BODY_PARAMS
from city_platform.entities import GEO_TYPES, Entity, Instance, Mode, check_uri, render_entity
from city_platform.errors import BadRequestData
from city_platform.ldcontext import CORE_CONTEXT_URL, Context
from city_platform.query.linked_q import relationship_objects
from city_platform.query.projection import Projection
from city_platform.storage.base import Storage

MAX_JOIN_LEVEL = 10  # the deepest join followed (as the projection language's limit)
MAX_LINKED = 1000  # linked Entities fetched for one answer at most; deeper links stay URIs
DEFAULT_GEOMETRY = "location"
_LANG_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")

Render = Callable[[Entity], dict[str, Any]]
Pair = tuple[Entity, dict[str, Any]]  # a stored Entity and its rendering


@dataclass(frozen=True, slots=True)
class Join:
    how: Literal["inline", "flat"]
    level: int


def parse_join(join: str | None, join_level: str | None) -> Join | None:
    """``join`` and ``joinLevel`` (5.7.1, 5.7.2; 4.5.23); None for no join (absent or
    ``@none``).  A bad value is BadRequestData."""
    if join is None or join == "@none":
        return None
    if join not in ("inline", "flat"):
        raise BadRequestData(f"join must be 'inline', 'flat' or '@none', got {join!r} (4.5.23)")
    level = 1
    if join_level is not None:
        try:
            level = int(join_level)
        except ValueError:
            level = 0
        if level < 1:
            raise BadRequestData(f"joinLevel must be a positive integer, got {join_level!r}")
    return Join(how="inline" if join == "inline" else "flat", level=min(level, MAX_JOIN_LEVEL))


def parse_contained_by(value: str | None) -> frozenset[str]:
    """``containedBy`` (5.7.1.3, 4.5.23): the Linked Entity ids met before, not inlined or
    returned again."""
    if value is None:
        return frozenset()
    items = [v.strip() for v in value.split(",")]
    for item in items:
        check_uri(item, "containedBy")
    return frozenset(items)


def _links(entity: Entity, keep: Collection[str] | None) -> list[str]:
    out: list[str] = []
    for iri, instances in entity["attrs"].items():
        if keep is not None and iri not in keep:
            continue
        for inst in instances:
            out.extend(relationship_objects(inst))
    return out


class Linker:
    """Follows the Relationships of rendered Entities within one tenant (4.5.23)."""

    def __init__(
        self, storage: Storage, tenant: str, ctx: Context, render: Render, join: Join, mode: str
    ) -> None:
        self._storage = storage
        self._tenant = tenant
        self._ctx = ctx
        self._render = render
        self._join = join
        self._mode = mode
        self._found: dict[str, Entity | None] = {}
        self._seen: set[str] = set()  # the ids met in the Entity tree being inlined
        self.contained_by: frozenset[str] = frozenset()  # ``containedBy``: met before

    async def _fetch(self, ids: Iterable[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self._found]
        room = MAX_LINKED - len(self._found)
        missing = missing[: max(room, 0)]
        if not missing:
            return
        got = await self._storage.get_entities(self._tenant, missing, shared=True)
        for i in missing:
            self._found[i] = got.get(i)

    async def apply(
        self, pairs: list[Pair], keep: Collection[str] | None, projection: Projection | None
    ) -> list[Pair]:
        """``pairs`` (stored, rendered) projected, with their linked Entities inlined in the
        rendered ones, or followed by them (flat).  ``keep`` are the root Attributes followed
        (None: all); ``projection`` the request's pick/omit."""
        if self._join.how == "inline":
            await self._inline(pairs, keep)
            return project_pairs(projection, pairs, drop_empty=False)
        linked = await self._flat([s for s, _ in pairs], keep, projection)
        return project_pairs(projection, pairs, drop_empty=False) + linked

    async def _inline(self, pairs: list[Pair], keep: Collection[str] | None) -> None:
        """5.7.1.5: an ``entity`` (``entityList``) member for each Relationship's target,
        "unless a URI has been previously encountered" in that Entity's tree."""
        frontier = [(s, r, {s["id"], *self.contained_by}) for s, r in pairs]
        for _ in range(self._join.level):
            await self._fetch(t for stored, _, _ in frontier for t in _links(stored, keep))
            nxt: list[tuple[Entity, dict[str, Any], set[str]]] = []
            for stored, rendered, seen in frontier:
                self._seen = seen
                for iri, instances in stored["attrs"].items():
                    if keep is not None and iri not in keep:
                        continue
                    key = self._ctx.compact(iri)
                    if key in rendered:
                        rendered[key] = self._attach(rendered[key], instances, nxt)
            frontier, keep = nxt, None  # linked Entities: every Relationship is followed
            if not frontier:
                break

    def _linked(self, entity_id: str, nxt: list[tuple[Entity, dict[str, Any], set[str]]]) -> Any:
        target = self._found.get(entity_id)
        if target is None or entity_id in self._seen:
            return None
        self._seen.add(entity_id)
        rendered = self._render(target)
        nxt.append((target, rendered, self._seen))
        return rendered

    def _attach(
        self,
        shown: Any,
        instances: list[Instance],
        nxt: list[tuple[Entity, dict[str, Any], set[str]]],
    ) -> Any:
        if self._mode == "keyValues":
            return self._attach_simplified(shown, instances, nxt)
        items = shown if isinstance(shown, list) else [shown]
        if len(items) != len(instances):
            return shown
        out = []
        for item, inst in zip(items, instances, strict=True):
            ids = relationship_objects(inst)
            shown_item = item
            if ids and isinstance(item, dict):
                if inst.get("type") == "ListRelationship":
                    linked = [self._linked(i, nxt) for i in ids]
                    shown_item = {**item, "entityList": [e for e in linked if e is not None]}
                else:
                    entity = self._linked(ids[0], nxt)
                    if entity is not None:
                        shown_item = {**item, "entity": entity}
            out.append(shown_item)
        return out if isinstance(shown, list) else out[0]

    def _attach_simplified(
        self,
        shown: Any,
        instances: list[Instance],
        nxt: list[tuple[Entity, dict[str, Any], set[str]]],
    ) -> Any:
        """Simplified form: the linked Entity stands in place of the object's URI."""
        if len(instances) != 1:
            return shown  # a dataset map: left as URIs
        (inst,) = instances
        ids = relationship_objects(inst)
        if not ids:
            return shown
        if inst.get("type") == "ListRelationship":
            linked = [self._linked(i, nxt) for i in ids]
            return [e if e is not None else i for e, i in zip(linked, ids, strict=True)]
        entity = self._linked(ids[0], nxt)
        return shown if entity is None else entity

    async def _flat(
        self, roots: list[Entity], keep: Collection[str] | None, projection: Projection | None
    ) -> list[Pair]:
        """The linked Entities, each once, projected by the part of the projection that
        addresses them: ``rel{...}`` for those reached through ``rel`` (4.21; as the ETSI
        suite's 018_20 and 018_21 expect, a pick does not follow a Relationship it leaves
        out)."""
        seen = {e["id"] for e in roots} | self.contained_by
        out: list[Pair] = []
        frontier: list[tuple[Entity, Projection | None]] = [(e, projection) for e in roots]
        for _ in range(self._join.level):
            steps = [
                (target, sub)
                for entity, proj in frontier
                for target, sub in self._steps(entity, keep, proj)
                if target not in seen
            ]
            await self._fetch(t for t, _ in steps)
            nxt: list[tuple[Entity, Projection | None]] = []
            for i, sub in steps:
                target = self._found.get(i)
                if target is not None and i not in seen:
                    seen.add(i)
                    nxt.append((target, sub))
                    rendered = self._render(target)
                    out.append((target, sub.apply(rendered) if sub is not None else rendered))
            frontier, keep = nxt, None
            if not frontier:
                break
        return out

    def _steps(
        self, entity: Entity, keep: Collection[str] | None, proj: Projection | None
    ) -> list[tuple[str, Projection | None]]:
        """The (target id, its projection) of each Relationship of ``entity`` followed."""
        out: list[tuple[str, Projection | None]] = []
        for iri, instances in entity["attrs"].items():
            if keep is not None and iri not in keep:
                continue
            sub: Projection | None = None
            if proj is not None:
                key = self._ctx.compact(iri)
                if proj.omit:
                    if key in proj.keys and proj.keys[key] is None:
                        continue  # omitted with all it links to
                    sub = proj.keys.get(key)
                else:
                    if key not in proj.keys:
                        continue
                    sub = proj.keys[key]
            out.extend((t, sub) for inst in instances for t in relationship_objects(inst))
        return out


# -- lang (4.15, 4.5.18) ----------------------------------------------------------------------


def parse_lang(value: str | None) -> list[str] | None:
    """The language ranges of ``lang``, best first (q weights as in HTTP Accept-Language)."""
    if value is None:
        return None
    ranges: list[tuple[float, int, str]] = []
    for n, part in enumerate(value.split(",")):
        fields = [f.strip() for f in part.split(";")]
        tag = fields[0]
        weight = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    weight = float(f[2:])
                except ValueError:
                    weight = -1.0
                if not 0.0 <= weight <= 1.0:
                    raise BadRequestData(f"lang: bad weight in {part.strip()!r}")
        if not _LANG_RANGE.match(tag):
            raise BadRequestData(f"lang: {tag!r} is not a language tag or range (4.15)")
        if weight > 0:
            ranges.append((-weight, n, tag.lower()))
    if not ranges:
        raise BadRequestData("lang: no language range with a weight above 0")
    return [tag for _, _, tag in sorted(ranges)]


def best_language(language_map: dict[str, Any], ranges: list[str]) -> str | None:
    """The key of ``language_map`` the ranges choose (RFC 4647 basic filtering, best range
    first); ``@none`` or the first key when none matches; None for an empty map."""
    keys = list(language_map)
    if not keys:
        return None
    for rng in ranges:
        for key in keys:
            low = key.lower()
            if key != "@none" and (rng in ("*", low) or low.startswith(rng + "-")):
                return key
    return "@none" if "@none" in language_map else keys[0]


def _lang_instance(inst: Instance, ranges: list[str]) -> Instance:
    out: Instance = {}
    for key, item in inst.items():
        if isinstance(item, dict) and ":" in key and "type" in item:
            out[key] = _lang_instance(item, ranges)  # a sub-attribute (keyed by IRI)
        else:
            out[key] = item
    if inst.get("type") == "LanguageProperty" and isinstance(inst.get("languageMap"), dict):
        language_map = inst["languageMap"]
        chosen = best_language(language_map, ranges)
        out.pop("languageMap", None)
        out["type"] = "Property"
        out["value"] = language_map.get(chosen) if chosen is not None else None
        if chosen is not None:
            out["lang"] = chosen  # 4.15: "in any case", the language returned
    return out


def apply_lang(entity: Entity, ranges: list[str] | None) -> Entity:
    """A copy of a stored Entity whose LanguageProperties are Properties in one language."""
    if ranges is None:
        return entity
    attrs = {
        iri: [_lang_instance(i, ranges) for i in instances]
        for iri, instances in entity["attrs"].items()
    }
    return {**entity, "attrs": attrs}


# -- GeoJSON (4.5.16, 4.5.17) -----------------------------------------------------------------


def geometry_of(entity: Entity, iri: str) -> Any:
    """The GeoJSON geometry of an Entity's default instance of ``iri`` (or of its only
    instance, as the ``datasetId`` parameter selects one), else None (4.5.16.1)."""
    instances = entity["attrs"].get(iri)
    if not instances:
        return None
    inst = next((i for i in instances if "datasetId" not in i), None)
    if inst is None and len(instances) == 1:
        inst = instances[0]  # the one instance the datasetId parameter kept
    if inst is None:
        return None
    value = inst.get("value")
    return value if _is_geometry(value) else None


def _is_geometry(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in GEO_TYPES and "coordinates" in value


def _rendered_geometry(item: Any) -> Any:
    """The geometry of a rendered Attribute (normalized, concise or simplified), else None."""
    if _is_geometry(item):
        return item
    if isinstance(item, dict) and _is_geometry(item.get("value")):
        return item["value"]
    return None


def feature(rendered: dict[str, Any], geometry: Any) -> dict[str, Any]:
    """A GeoJSON Feature (4.5.16.2): id, type Feature, geometry and properties (the Entity's
    type and Attributes, not its id)."""
    properties = {k: v for k, v in rendered.items() if k not in ("id", "@context")}
    return {
        "id": rendered.get("id"),
        "type": "Feature",
        "geometry": geometry,
        "properties": properties,
    }


def context_value(context: Any) -> Any:
    return context if context is not None else CORE_CONTEXT_URL


# -- one request's representation choices -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Representation:
    """What a retrieve or query request asks of the representation: join, lang, GeoJSON."""

    join: Join | None = None
    lang: list[str] | None = None
    geometry_iri: str | None = None  # set for Accept: application/geo+json
    geometry_key: str = DEFAULT_GEOMETRY  # its name in rendered Entities
    contained_by: frozenset[str] = frozenset()  # ``containedBy``: Entity ids met before
    context_in_body: bool = True  # GeoJSON: False for ``Prefer: body=json`` (5.7.1.4)

    @classmethod
    def build(
        cls,
        ctx: Context,
        *,
        media: str,
        join: str | None,
        join_level: str | None,
        lang: str | None,
        geometry_property: str | None,
    ) -> Representation:
        geo = media == GEO_JSON
        if geometry_property is not None and not geo:
            raise BadRequestData(
                "geometryProperty needs Accept: application/geo+json (5.7.1.4, 5.7.2.4)"
            )
        if join is None and join_level is None and lang is None and not geo:
            return cls()  # the common read: nothing to parse (every GET passes here)
        if not geo:
            return cls(join=parse_join(join, join_level), lang=parse_lang(lang))
        name = geometry_property if geometry_property is not None else DEFAULT_GEOMETRY
        iri = ctx.expand(name)
        return cls(
            join=parse_join(join, join_level),
            lang=parse_lang(lang),
            geometry_iri=iri,
            geometry_key=ctx.compact(iri),
        )

    @classmethod
    def from_request(
        cls,
        ctx: Context,
        request: Request,
        *,
        media: str,
        lang: str | None,
        geometry_property: str | None,
    ) -> Representation:
        """As :meth:`build`, with ``join``/``joinLevel`` from the URL or a POST Query's body."""
        params = request.query_params
        body: dict[str, Any] = getattr(request.state, BODY_PARAMS, {})
        built = cls.build(
            ctx,
            media=media,
            join=params.get("join", body.get("join")),
            join_level=params.get("joinLevel", body.get("joinLevel")),
            lang=lang,
            geometry_property=geometry_property,
        )
        contained = params.get("containedBy", body.get("containedBy"))
        prefer = request.headers.get("prefer", "").replace(" ", "").lower()
        if contained is None and not prefer:
            return built
        return replace(
            built,
            contained_by=parse_contained_by(contained),
            context_in_body="body=json" not in prefer.split(","),
        )

    async def entities(
        self,
        storage: Storage,
        tenant: str,
        ctx: Context,
        found: list[Entity],
        *,
        attrs: Collection[str] | None,
        mode: Mode,
        sys_attrs: bool,
        projection: Projection | None,
        drop_empty: bool,
    ) -> list[Pair]:
        """Render stored Entities (lang applied), join their linked Entities, project."""

        def draw(entity: Entity) -> dict[str, Any]:
            return render_entity(entity, ctx, mode=mode, sys_attrs=sys_attrs)

        roots = [self.localize(e) for e in found]
        pairs = [
            (e, render_entity(e, ctx, attrs=attrs, mode=mode, sys_attrs=sys_attrs)) for e in roots
        ]
        if self.join is None or not pairs:
            return project_pairs(projection, pairs, drop_empty=drop_empty)
        pairs = await self.link(
            storage, tenant, ctx, pairs, keep=attrs, render=draw, mode=mode, projection=projection
        )
        # An Entity the projection left empty is left out of a query answer (as without join).
        return [(s, r) for s, r in pairs if r or not drop_empty]

    @property
    def flat(self) -> bool:
        return self.join is not None and self.join.how == "flat"

    def localize(self, entity: Entity) -> Entity:
        return apply_lang(entity, self.lang)

    async def link(
        self,
        storage: Storage,
        tenant: str,
        ctx: Context,
        pairs: list[Pair],
        *,
        keep: Collection[str] | None,
        render: Render,
        mode: str,
        projection: Projection | None = None,
    ) -> list[Pair]:
        """Linked Entity Retrieval (4.5.23) when asked, then the projection; ``render``
        draws a linked Entity."""
        if self.join is None or not pairs:
            return project_pairs(projection, pairs, drop_empty=False)

        def draw(entity: Entity) -> dict[str, Any]:
            return render(self.localize(entity))

        linker = Linker(storage, tenant, ctx, draw, self.join, mode)
        linker.contained_by = self.contained_by
        return await linker.apply(pairs, keep, projection)

    def body(self, rendered: Any, *, stored: dict[str, Entity], context: Any, one: bool) -> Any:
        """The answer's body: ``rendered`` (one Entity or a list), or as GeoJSON (a Feature
        for one Entity, else a FeatureCollection, 4.5.16.2-3) carrying the @context.
        ``stored`` are the stored Entities by id, where the geometry is taken from."""
        if self.geometry_iri is None:
            return rendered
        # 5.7.1.4, 5.7.2.4: the @context is a member unless Prefer: body=json asks for the
        # Link header only (which render() always adds for GeoJSON).
        extra = {"@context": context_value(context)} if self.context_in_body else {}
        if isinstance(rendered, dict):
            return {**self._feature(rendered, stored), **extra}
        features = [self._feature(r, stored) for r in rendered if isinstance(r, dict)]
        if one and len(features) == 1:
            return {**features[0], **extra}
        return {"type": "FeatureCollection", "features": features, **extra}

    def _feature(self, rendered: dict[str, Any], stored: dict[str, Entity]) -> dict[str, Any]:
        assert self.geometry_iri is not None
        entity = stored.get(rendered.get("id", ""))
        if entity is not None:
            geometry = geometry_of(entity, self.geometry_iri)
        else:  # an Entity from elsewhere (a context source): from what it answered
            geometry = _rendered_geometry(rendered.get(self.geometry_key))
        return feature(rendered, geometry)


def project_pairs(
    projection: Projection | None, pairs: list[Pair], *, drop_empty: bool
) -> list[Pair]:
    """Apply a pick/omit projection (4.21) to the rendered member of each pair."""
    if projection is None:
        return pairs
    out = [(s, projection.apply(r)) for s, r in pairs]
    return [(s, r) for s, r in out if r or not drop_empty]
