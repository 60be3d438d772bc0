"""Limits on what a request may make the platform parse, store and answer with.

CIM 009 leaves implementation limits to the implementation; each one here is documented in
docs/platform.md ("Robustness and limits") and answered 400 BadRequestData (CIM 009 5.5.2:
input data that does not meet the requirements of the operation), never 500.

- ``MAX_JSON_DEPTH``: JSON objects and arrays nest at most 64 levels deep in a request body or a
  JSON query parameter (``coordinates``), the body itself being level 1.  An entity is level 1,
  its attributes level 2, so a Property value may nest about 60 levels, sub-attributes alike.
  Without a limit a value nested 255 levels is accepted and then cannot be stored (orjson
  serializes at most 254 levels), and 1,025 levels or more is refused by the JSON parser.
"""

from __future__ import annotations

from typing import Any

import orjson

from city_platform.errors import BadRequestData, InvalidRequest

MAX_JSON_DEPTH = 64


def json_depth(doc: Any, stop: int = MAX_JSON_DEPTH + 1) -> int:
    """How many levels of objects and arrays ``doc`` nests (a scalar is 0), without recursion;
    counting stops at ``stop`` (a value above the limit is all the caller needs)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest >= stop:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_depth(doc: Any, what: str) -> None:
    """BadRequestData when ``doc`` nests deeper than :data:`MAX_JSON_DEPTH`."""
    if not _within(doc, MAX_JSON_DEPTH):
        raise BadRequestData(_too_deep(what))


def _within(item: Any, levels: int) -> bool:
    """Whether ``item`` nests at most ``levels`` levels (what :func:`json_depth` counts).

    Recursive, not a stack of (item, level) pairs: every request body passes here and this is
    about twice as fast; the recursion stops at ``levels`` (64) deep."""
    kind = type(item)
    if kind is dict:
        children: Any = item.values()
    elif kind is list:
        children = item
    else:
        return True
    if levels == 0:
        return False
    for child in children:
        if (type(child) is dict or type(child) is list) and not _within(child, levels - 1):
            return False
    return True


def loads_json(raw: bytes | str, what: str) -> Any:
    """Parse ``raw`` as JSON within :data:`MAX_JSON_DEPTH`: InvalidRequest when it is not JSON,
    BadRequestData when it nests too deep (orjson itself stops at 1,024 levels)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise BadRequestData(_too_deep(what)) from None
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    check_depth(doc, what)
    return doc


def _too_deep(what: str) -> str:
    return (
        f"{what} nests JSON objects/arrays deeper than {MAX_JSON_DEPTH} levels "
        "(the platform's nesting limit)"
    )


def header_number(value: str | None) -> int | None:
    """A header's non-negative decimal number (Content-Length, NGSILD-Results-Count), None when
    it is not one.  ASCII digits only ('²'.isdigit() holds, int() refuses it); 19 digits or
    more count as 10**18, over every limit, without int() (it refuses more than 4,300 digits).
    Both kinds of header value were a 500 where ``value.isdigit()`` guarded ``int(value)``."""
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 10**18
