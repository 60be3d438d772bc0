"""Attribute projection: ``pick`` and ``omit`` (CIM 009 4.21, 5.7.1, 5.7.2) and ``datasetId``.

The projection language selects entity members (``id``, ``type``, ``scope``, the system
members) and Attributes by name; ``name{...}`` selects inside the Entity a Relationship links
to, which only has meaning with Linked Entity retrieval (``join``, 4.5.23)::

    pick=id,name,locatedAt{name,address}
    omit=type,location

``attrs`` is the older spelling of a pick of Attributes (it also selects the entities that
have at least one of them); ``pick``/``omit`` together with ``attrs``, or with each other, are
BadRequestData (5.7.2.4).  A projection works on the rendered (compacted) entity, so it is one
dictionary pass per entity and costs nothing when it is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context

# Entity members that are not Attributes (4.5.1, 4.8); they are never expanded.
CORE_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})
# A name as 4.6.2 allows it, without the projection language's own characters.
_NAME = re.compile(r"[^\s<>\"'=;(){}\[\],|\\]+")
MAX_JOIN_LEVEL = 10  # the deepest join the platform follows; a deeper projection is refused
MAX_PROJECTION = 2048  # characters; longer is refused before parsing


@dataclass(frozen=True, slots=True)
class Term:
    """One selected member; ``inner`` selects inside the linked Entity (``name{...}``)."""

    name: str
    inner: tuple[Term, ...] = ()


def parse_projection(text: str, what: str) -> tuple[Term, ...]:
    """Parse a projection list (4.21) or raise BadRequestData saying where it is wrong."""
    if len(text) > MAX_PROJECTION:
        raise BadRequestData(f"{what}: longer than {MAX_PROJECTION} characters")
    terms, pos = _parse_list(text, 0, what, depth=0)
    if pos != len(text):
        raise BadRequestData(f"{what}: unexpected {text[pos]!r} at position {pos} in {text!r}")
    return terms


def _parse_list(text: str, pos: int, what: str, *, depth: int) -> tuple[tuple[Term, ...], int]:
    if depth > MAX_JOIN_LEVEL:
        raise BadRequestData(f"{what}: nested deeper than {MAX_JOIN_LEVEL} levels")
    terms: list[Term] = []
    while True:
        match = _NAME.match(text, pos)
        if match is None:
            found = repr(text[pos]) if pos < len(text) else "the end"
            raise BadRequestData(
                f"{what}: expected an attribute name at position {pos}, found {found} "
                f"in {text!r} (CIM 009 4.21)"
            )
        name = match.group()
        pos = match.end()
        inner: tuple[Term, ...] = ()
        if pos < len(text) and text[pos] == "{":
            inner, pos = _parse_list(text, pos + 1, what, depth=depth + 1)
            if pos >= len(text) or text[pos] != "}":
                raise BadRequestData(f"{what}: '{{' without a closing '}}' in {text!r}")
            pos += 1
        terms.append(Term(name, inner))
        if pos < len(text) and text[pos] in ",|":
            pos += 1
            continue
        return tuple(terms), pos


def depth(terms: tuple[Term, ...]) -> int:
    """How many Linked Entity hops a projection addresses (0 for plain names)."""
    return max((1 + depth(t.inner) if t.inner else 0 for t in terms), default=0)


@dataclass(frozen=True, slots=True)
class Projection:
    """A parsed ``pick`` (``omit`` False) or ``omit`` list, keyed by the names the client's
    context renders (so it applies to rendered entities)."""

    keys: dict[str, Projection | None]
    omit: bool
    attr_iris: frozenset[str]  # the Attributes a pick names (what rendering may stop at)

    def apply(self, rendered: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in rendered.items():
            if key == "@context":
                out[key] = item
                continue
            selected = key in self.keys
            if self.omit and selected and self.keys[key] is None:
                continue
            if not self.omit and not selected:
                continue
            inner = self.keys.get(key)
            out[key] = _apply_inner(item, inner) if inner is not None else item
        return out


def _apply_inner(item: Any, inner: Projection) -> Any:
    """Project the Entity inlined in a Relationship by ``join=inline`` (its ``entity``)."""
    if isinstance(item, list):
        return [_apply_inner(i, inner) for i in item]
    if isinstance(item, dict) and isinstance(item.get("entity"), dict):
        return {**item, "entity": inner.apply(item["entity"])}
    return item


def _build(terms: tuple[Term, ...], ctx: Context, *, omit: bool) -> Projection:
    keys: dict[str, Projection | None] = {}
    iris: set[str] = set()
    for term in terms:
        if term.name in CORE_MEMBERS:
            key = term.name
        else:
            iri = ctx.expand(term.name)
            iris.add(iri)
            key = ctx.compact(iri)
        keys[key] = _build(term.inner, ctx, omit=omit) if term.inner else None
    return Projection(keys=keys, omit=omit, attr_iris=frozenset(iris))


def build_projection(
    ctx: Context,
    *,
    pick: str | None,
    omit: str | None,
    attrs: str | None,
    join: str | None = None,
    join_level: str | None = None,
) -> Projection | None:
    """The projection of a retrieve or query request, None when it has none (5.7.1, 5.7.2)."""
    if pick is None and omit is None:
        return None
    if attrs is not None:
        raise BadRequestData("'attrs' cannot be combined with 'pick' or 'omit' (CIM 009 4.21)")
    if pick is not None and omit is not None:
        raise BadRequestData("'pick' and 'omit' exclude each other (CIM 009 5.7.2.4)")
    what = "pick" if pick is not None else "omit"
    terms = parse_projection(pick if pick is not None else str(omit), what)
    hops = depth(terms)
    if hops:
        if join is None:
            raise BadRequestData(
                f"{what}: a '{{...}}' selection addresses Linked Entities and needs 'join' "
                "(CIM 009 5.7.2.4)"
            )
        level = _join_level(join_level)
        if hops > level:
            raise BadRequestData(
                f"{what}: {hops} Linked Entity hops, more than joinLevel {level} (5.7.2.4)"
            )
    return _build(terms, ctx, omit=omit is not None)


def _join_level(value: str | None) -> int:
    if value is None:
        return 1
    try:
        level = int(value)
    except ValueError:
        raise BadRequestData(f"joinLevel must be a positive integer, got {value!r}") from None
    if level < 1:
        raise BadRequestData(f"joinLevel must be a positive integer, got {value!r}")
    return min(level, MAX_JOIN_LEVEL)


def parse_dataset_ids(value: str | None) -> frozenset[str | None] | None:
    """``datasetId`` (5.7.1, 5.7.2 in v1.8): a comma list; ``@none`` is the default instance."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not items or any(not v for v in items):
        raise BadRequestData("datasetId: an empty item in the list")
    out: set[str | None] = set()
    for item in items:
        if item == "@none":
            out.add(None)
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", item):
            out.add(item)
        else:
            raise BadRequestData(f"datasetId: {item!r} is neither a URI nor @none")
    return frozenset(out)


def only_datasets(entity: dict[str, Any], wanted: frozenset[str | None]) -> dict[str, Any]:
    """A shallow copy of a stored entity keeping only the instances of the wanted datasetIds
    (an Attribute without such an instance is left out)."""
    attrs: dict[str, Any] = {}
    for iri, instances in entity["attrs"].items():
        kept = [i for i in instances if i.get("datasetId") in wanted]
        if kept:
            attrs[iri] = kept
    return {**entity, "attrs": attrs}
