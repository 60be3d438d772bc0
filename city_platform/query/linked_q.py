"""``q`` on Linked Entities: ``rel{attr}==40`` and ``rel{Type:attr}==40`` (CIM 009 4.9,
production rule LinkedEntityRelation; examples 13 and 14, as in V1.9.1).

A term ``rel{path}rest`` holds for an Entity when its Relationship (or ListRelationship)
``rel`` targets an Entity for which the query ``path rest`` holds; ``Type1,Type2:`` before
the path is a hint restricting the targets to those types, and ``path`` may itself follow a
Relationship (``rel{rel2{attr}}``).  The q evaluator (:mod:`city_platform.query.q`) knows
nothing of Linked Entities, so each such term is resolved first: the matching target Entities
are found with the inner query, and the term becomes a test of a synthetic Property which
:meth:`LinkedQ.wrap` adds, only for the check, to the Entities whose ``rel`` points at one of
them.  A ``!`` before the term tests for the absence of such a link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from city_platform.errors import InvalidRequest
from city_platform.ldcontext import Context
from city_platform.storage.base import Entity, Storage

MAX_LINK_DEPTH = 10
_SYNTHETIC = "r197linkedEntityTerm{n}"  # a q name (4.9 AttrName) no client is expected to use
_HINT = re.compile(r"^\s*([A-Za-z_][\w\-]*(?:\s*,\s*[A-Za-z_][\w\-]*)*)\s*:(?!//)")
_ENDS = ";|)"

Predicate = Callable[[Entity], bool]


@dataclass
class LinkedQ:
    """A ``q`` whose Linked Entity terms are resolved (``q`` is what the q parser gets)."""

    q: str | None
    # synthetic attribute IRI -> (Relationship IRI, the ids of the target Entities that match)
    links: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)

    def wrap(self, predicate: Predicate | None) -> Predicate | None:
        """The predicate, checked on Entities given the synthetic Properties they earn."""
        if not self.links or predicate is None:
            return predicate
        links = self.links
        check = predicate

        def linked(entity: Entity) -> bool:
            extra: dict[str, Any] = {}
            for synthetic, (rel, ids) in links.items():
                if any(
                    o in ids
                    for inst in entity["attrs"].get(rel, ())
                    for o in relationship_objects(inst)
                ):
                    extra[synthetic] = [{"type": "Property", "value": True}]
            if extra:
                entity = {**entity, "attrs": {**entity["attrs"], **extra}}
            return check(entity)

        return linked


def relationship_objects(inst: dict[str, Any]) -> list[str]:
    """The Entity ids a Relationship or ListRelationship instance points at (none for any
    other attribute)."""
    atype = inst.get("type")
    if atype == "Relationship":
        obj = inst.get("object")
        items = obj if isinstance(obj, list) else [obj]
    elif atype == "ListRelationship":
        items = [i.get("object") if isinstance(i, dict) else i for i in inst.get("objectList", ())]
    else:
        return []
    return [i for i in items if isinstance(i, str)]


def has_linked_terms(q: str | None) -> bool:
    return q is not None and "{" in _outside_quotes(q)


def _outside_quotes(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


@dataclass(frozen=True)
class _Term:
    start: int  # where the term's name begins (after a '!')
    end: int  # just past the term (its operator and value included)
    rel: str
    inner: str  # the query on the target Entities
    hint: str | None  # the type selection of the targets


def _terms(q: str) -> list[_Term]:
    """The ``rel{...}rest`` terms of ``q`` at its top level of braces."""
    out: list[_Term] = []
    start = 0
    i = 0
    n = len(q)
    while i < n:
        ch = q[i]
        if ch == '"':
            i = _after_string(q, i)
            continue
        if ch in ";|(":
            start = i + 1
        elif ch == "{":
            name = q[start:i].strip()
            lead = len(q[start:i]) - len(q[start:i].lstrip())
            begin = start + lead
            if name.startswith("!"):
                name, begin = name[1:].strip(), begin + 1
            if not name:
                raise InvalidRequest(f"q: '{{' without a Relationship name at position {i}")
            close = _closing(q, i)
            end = close + 1
            while end < n:
                c = q[end]
                if c == '"':
                    end = _after_string(q, end)
                    continue
                if c in _ENDS:
                    break
                end += 1
            path = q[i + 1 : close]
            hint_match = _HINT.match(path)
            hint = None
            if hint_match is not None:
                hint = hint_match.group(1).replace(" ", "")
                path = path[hint_match.end() :]
            inner = path.strip() + q[close + 1 : end].strip()
            if not path.strip():
                raise InvalidRequest(f"q: an empty Linked Entity path at position {i}")
            out.append(_Term(begin, end, name, inner, hint))
            i = end
            start = end
            continue
        i += 1
    return out


def _after_string(q: str, at: int) -> int:
    """Where scanning goes on after the quoted string opening at ``q[at]`` (a backslash
    escapes the next character); past the end when the string is not closed."""
    i = at + 1
    while i < len(q):
        if q[i] == "\\":
            i += 2
            continue
        if q[i] == '"':
            return i + 1
        i += 1
    return i


def _closing(q: str, open_at: int) -> int:
    depth = 0
    i = open_at
    while i < len(q):
        ch = q[i]
        if ch == '"':
            i = _after_string(q, i)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InvalidRequest(f"q: '{{' at position {open_at} without its closing '}}' (4.9)")


async def resolve(
    q: str | None,
    ctx: Context,
    storage: Storage,
    tenant: str,
    *,
    depth: int = 0,
    counter: list[int] | None = None,
) -> LinkedQ:
    """Resolve the Linked Entity terms of ``q`` against the tenant's Entities."""
    if not has_linked_terms(q):
        return LinkedQ(q)
    assert q is not None
    if depth >= MAX_LINK_DEPTH:
        raise InvalidRequest(f"q: Linked Entity paths nested deeper than {MAX_LINK_DEPTH}")
    from city_platform.search import EntitySearch  # noqa: PLC0415  # search imports q

    counter = counter if counter is not None else [0]
    result = LinkedQ(None)
    parts: list[str] = []
    pos = 0
    for term in _terms(q):
        inner = await resolve(term.inner, ctx, storage, tenant, depth=depth + 1, counter=counter)
        search = EntitySearch.build(ctx, types=term.hint, q=inner.q)
        found, _ = await storage.find_entities(
            tenant, search.where, predicate=inner.wrap(search.predicate())
        )
        name = _SYNTHETIC.format(n=counter[0])
        counter[0] += 1
        synthetic = ctx.expand(name)
        result.links[synthetic] = (ctx.expand(term.rel), frozenset(e["id"] for e in found))
        parts.append(q[pos : term.start])
        parts.append(name)
        pos = term.end
    parts.append(q[pos:])
    result.q = "".join(parts)
    return result
