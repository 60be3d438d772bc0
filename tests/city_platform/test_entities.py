"""Entity validation units: the stored form of types and of plain Property instances."""

from __future__ import annotations

from typing import Any

import pytest

from city_platform import entities as ent
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context, ContextResolver

NOW = "2026-12-01T00:00:00.000Z"
CORE = "https://uri.etsi.org/ngsi-ld/default-context/"


@pytest.fixture
async def ctx() -> Context:
    return await ContextResolver(allow_remote=False).resolve(None)


async def test_types_are_stored_once_each_in_their_order(ctx: Context) -> None:
    """A type named twice is one type (CIM 009 4.5.1); batch merges rely on it."""
    assert ent.expand_types(["Room", "Office", "Room"], ctx) == [CORE + "Room", CORE + "Office"]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (
            {"type": "Property", "value": 1.5, "observedAt": "2026-01-01T00:00:00.123Z"},
            [("type", "Property"), ("value", 1.5), ("observedAt", "2026-01-01T00:00:00.123Z")],
        ),
        (
            {"unitCode": "CEL", "value": [1], "type": "Property"},
            [("type", "Property"), ("value", [1]), ("unitCode", "CEL")],
        ),
        ({"type": "Property", "value": False}, [("type", "Property"), ("value", False)]),
    ],
)
def test_plain_properties_keep_their_members_in_order(
    raw: dict[str, Any], stored: list[tuple[str, object]]
) -> None:
    """The stored instance: type and value first, then the members in the order sent, then
    the system times (the order clients see them in)."""
    got = ent.normalize_instance("t", raw, Context({}, CORE), now=NOW)
    assert list(got.items()) == [*stored, ("createdAt", NOW), ("modifiedAt", NOW)]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"type": "Property", "value": 1, "observedAt": "yesterday"}, "observedAt"),
        ({"type": "Property", "value": 1, "observedAt": 5}, "observedAt"),
        ({"type": "Property", "value": 1, "unitCode": 5}, "unitCode"),
        ({"type": "Property", "value": None}, "non-null"),
    ],
)
def test_plain_properties_are_checked_like_any_other(raw: dict[str, Any], says: str) -> None:
    """The fast path for plain readings rejects what the general path rejects, twice in a
    row (the verdict on a time is remembered, and must not let a bad one through)."""
    for _ in range(2):
        with pytest.raises(BadRequestData, match=says):
            ent.normalize_instance("t", raw, Context({}, CORE), now=NOW)
