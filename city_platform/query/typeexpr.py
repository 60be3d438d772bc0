"""The entity type selection language (CIM 009 4.17) and the ``type=*`` wildcard.

::

    Building                 entities of type Building (one of their types)
    Building,Vehicle         either (the older list form); also Building|Vehicle
    Building;Tower           entities that are of both types (a multi-typed entity, 4.5.1)
    (Building|Tower);Museum  parentheses group; ';' (AND) binds tighter than '|' / ',' (OR)
    *                        every entity, whatever its type

An entity has a set of types; a name is true when the set holds it.  Every expression is
monotone (there is no negation), so an entity that matches has at least one of the named
types: the union of the names is what the storage may filter on first (``any_of``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from city_platform.entities import check_name
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context

MAX_TYPE_EXPR = 2048  # characters
MAX_DEPTH = 16
_TOKEN = re.compile(r"\s*(?:([(),|;])|([^\s(),|;]+))")

Matcher = Callable[[Collection[str]], bool]


@dataclass(frozen=True)
class TypeSelection:
    """A parsed ``type`` parameter: ``any_of`` for the storage, ``exact`` when the storage's
    any-of filter is the whole answer (a plain list), else ``matches`` must also hold."""

    any_of: frozenset[str]
    exact: bool
    matches: Matcher


def parse_type_selection(value: str, ctx: Context) -> TypeSelection | None:
    """Parse ``type`` (4.17); None for ``*`` (all entities)."""
    text = value.strip()
    if text == "*":
        return None
    if not text:
        raise BadRequestData("type: empty entity type selection")
    if len(text) > MAX_TYPE_EXPR:
        raise BadRequestData(f"type: longer than {MAX_TYPE_EXPR} characters")
    tokens = _tokens(text)
    parser = _Parser(tokens, ctx, text)
    matcher = parser.expression(0)
    if parser.pos != len(tokens):
        raise BadRequestData(f"type: unexpected {tokens[parser.pos]!r} in {text!r} (4.17)")
    exact = not any(t in (";", "(", ")") for t in tokens)
    return TypeSelection(any_of=frozenset(parser.names), exact=exact, matches=matcher)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise BadRequestData(f"type: cannot read {text[pos:]!r} (4.17)")
        out.append(match.group(1) or match.group(2))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str], ctx: Context, text: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ctx = ctx
        self.text = text
        self.names: set[str] = set()

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expression(self, depth: int) -> Matcher:
        if depth > MAX_DEPTH:
            raise BadRequestData(f"type: nested deeper than {MAX_DEPTH} levels")
        alternatives = [self._conjunction(depth)]
        while self._peek() in (",", "|"):
            self.pos += 1
            alternatives.append(self._conjunction(depth))
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda types: any(m(types) for m in alternatives)

    def _conjunction(self, depth: int) -> Matcher:
        parts = [self._factor(depth)]
        while self._peek() == ";":
            self.pos += 1
            parts.append(self._factor(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda types: all(m(types) for m in parts)

    def _factor(self, depth: int) -> Matcher:
        item = self._peek()
        if item is None:
            raise BadRequestData(f"type: an entity type is missing at the end of {self.text!r}")
        if item == "(":
            self.pos += 1
            inner = self.expression(depth + 1)
            if self._peek() != ")":
                raise BadRequestData(f"type: '(' without a closing ')' in {self.text!r}")
            self.pos += 1
            return inner
        if item in (")", ",", "|", ";"):
            raise BadRequestData(f"type: unexpected {item!r} in {self.text!r} (4.17)")
        self.pos += 1
        iri = self.ctx.expand(check_name(item, "entity type"))
        self.names.add(iri)
        return lambda types: iri in types
