"""Entity scopes (CIM 009 4.18) and the scope query language ``scopeQ`` (4.19).

A scope is a hierarchical path, ``/Madrid/Gardens/ParqueNorte``; an entity has none, one (a
string) or several (an array).  A scope query matches an entity when one of its scopes
matches::

    /Madrid              exactly /Madrid
    /Madrid/#            /Madrid and every scope below it
    /Madrid/+            the scopes one level below /Madrid (/Madrid/Gardens, not /Madrid)
    /#                   every entity that has a scope
    /Madrid;/Spain       both (';' AND binds tighter than ',' / '|' OR); parentheses group
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from city_platform.errors import BadRequestData

# A level is a non-empty name without '/', '#', '+' or the characters 4.6.2 forbids.
_LEVEL = r"[^\s/#+<>\"'=;(),|\\]+"
_SCOPE = re.compile(rf"^(?:/{_LEVEL})+$")
_QUERY_PATH = re.compile(rf"^(?:/(?:{_LEVEL}|\+))*(?:/#)?$")
MAX_SCOPES = 100
MAX_SCOPEQ = 2048
MAX_DEPTH = 16

ScopeMatcher = Callable[[Sequence[str]], bool]


def normalize_scope(raw: object) -> list[str]:
    """The stored form of an entity's ``scope`` (a list), or BadRequestData (4.18)."""
    if raw is None or raw == "urn:ngsi-ld:null":
        raise BadRequestData("scope: an entity cannot be created with a Null scope")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise BadRequestData("scope must be a string or a non-empty array of strings")
    if len(items) > MAX_SCOPES:
        raise BadRequestData(f"scope: more than {MAX_SCOPES} scopes")
    for item in items:
        if not isinstance(item, str) or _SCOPE.match(item) is None:
            raise BadRequestData(
                f"scope {item!r} is not a scope path such as /Madrid/Gardens (CIM 009 4.18)"
            )
    return list(dict.fromkeys(items))


def render_scope(scopes: list[str]) -> Any:
    """One scope renders as a string, several as an array (4.18)."""
    return scopes[0] if len(scopes) == 1 else list(scopes)


def entity_scopes(entity: dict[str, Any]) -> list[str]:
    found = entity.get("scope")
    return list(found) if isinstance(found, list) else []


def _path_matcher(path: str) -> ScopeMatcher:
    if _QUERY_PATH.match(path) is None or path in ("", "/"):
        raise BadRequestData(f"scopeQ: {path!r} is not a scope expression (CIM 009 4.19)")
    if path == "/#":
        return bool
    tail = ""
    if path.endswith("/#"):
        path, tail = path[:-2], "(?:/.+)?"
    levels = path.split("/")[1:]
    body = "".join("/[^/]+" if lv == "+" else "/" + re.escape(lv) for lv in levels)
    pattern = re.compile(f"^{body}{tail}$")
    return lambda scopes: any(pattern.match(s) for s in scopes)


def parse_scope_query(text: str) -> ScopeMatcher:
    """Parse ``scopeQ`` into a test on an entity's scopes (4.19)."""
    if len(text) > MAX_SCOPEQ:
        raise BadRequestData(f"scopeQ: longer than {MAX_SCOPEQ} characters")
    tokens = [t for t in re.split(r"\s*([(),|;])\s*", text.strip()) if t != ""]
    if not tokens:
        raise BadRequestData("scopeQ: empty")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def chain(
        operand: Callable[[], ScopeMatcher],
        operators: tuple[str, ...],
        combine: Callable[[Iterable[bool]], bool],
    ) -> ScopeMatcher:
        """``operand (operator operand)*``, the matchers joined by ``combine``."""
        nonlocal pos
        parts = [operand()]
        while peek() in operators:
            pos += 1
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return lambda scopes: combine(m(scopes) for m in parts)

    def expression(depth: int) -> ScopeMatcher:
        if depth > MAX_DEPTH:
            raise BadRequestData(f"scopeQ: nested deeper than {MAX_DEPTH} levels")
        return chain(lambda: conjunction(depth), (",", "|"), any)

    def conjunction(depth: int) -> ScopeMatcher:
        return chain(lambda: factor(depth), (";",), all)

    def factor(depth: int) -> ScopeMatcher:
        nonlocal pos
        item = peek()
        if item is None:
            raise BadRequestData(f"scopeQ: an expression is missing at the end of {text!r}")
        pos += 1
        if item == "(":
            inner = expression(depth + 1)
            if peek() != ")":
                raise BadRequestData(f"scopeQ: '(' without a closing ')' in {text!r}")
            pos += 1
            return inner
        if item in ("(", ")", ",", "|", ";"):
            raise BadRequestData(f"scopeQ: unexpected {item!r} in {text!r} (4.19)")
        return _path_matcher(item)

    matcher = expression(0)
    if pos != len(tokens):
        raise BadRequestData(f"scopeQ: unexpected {tokens[pos]!r} in {text!r} (4.19)")
    return matcher
