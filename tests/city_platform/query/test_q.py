"""Unit tests of the q parser and evaluator (CIM 009 4.9)."""

from __future__ import annotations

from typing import Any

import pytest

from city_platform.errors import InvalidRequest, TooComplexQuery
from city_platform.query.q import parse_q

NS = "https://example.org/"


def expand(name: str) -> str:
    return name if ":" in name else NS + name


def prop(value: Any, **meta: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, **meta}]


ROOM: dict[str, Any] = {
    "id": "urn:ngsi-ld:Room:1",
    "type": [NS + "Room"],
    "attrs": {
        NS + "temperature": prop(21.5, observedAt="2024-05-01T10:00:00Z", unitCode="CEL"),
        NS + "name": prop("Kitchen 2"),
        NS + "open": prop(True),
        NS + "tags": prop(["a", "b"]),
        NS + "status": prop({"level": "ok", "deep": {"x": 3}}),
        NS + "owner": [{"type": "Relationship", "object": "urn:ngsi-ld:Person:7"}],
        NS + "co2": [
            {"type": "Property", "value": 400, "datasetId": "urn:ds:a"},
            {"type": "Property", "value": 900, "datasetId": "urn:ds:b"},
        ],
        NS + "humidity": [
            {"type": "Property", "value": 40, NS + "accuracy": {"type": "Property", "value": 2}}
        ],
    },
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("temperature==21.5", True),
        ("temperature!=21.5", False),
        ("temperature>21", True),
        ("temperature>=21.5", True),
        ("temperature<21.5", False),
        ("temperature<=21.5", True),
        ("temperature==20..22", True),
        ("temperature==22..30", False),
        ("temperature!=22..30", True),
        ("temperature==1,2,21.5", True),
        ("temperature!=1,2,21.5", False),
        ('name=="Kitchen 2"', True),
        ("name==Kitchen", False),
        ("name~=^Kit", True),
        ('name~="(?i)kitchen"', True),
        ('name~="^Kitchen \\d$"', True),  # a quoted pattern keeps its escapes
        ('name~="^Kitchen \\D$"', False),
        ("name~=^Kitchen\\s\\d", True),
        ("name!~=^Kit", False),
        ("open==true", True),
        ("open==false", False),
        ('tags=="b"', True),
        ('tags!="c"', True),
        ('status[level]=="ok"', True),
        ("status[deep][x]==3", True),
        ("status[deep.x]>2", True),
        ('owner=="urn:ngsi-ld:Person:7"', True),
        ("temperature.observedAt>=2024-05-01T09:00:00Z", True),
        ("temperature.observedAt<2024-05-01T09:00:00+00:00", False),
        ('temperature.unitCode=="CEL"', True),
        ("humidity.accuracy==2", True),
        ("co2>800", True),
        ("co2<300", False),
        ("temperature", True),
        ("missing", False),
        ("!missing", True),
        ("!temperature", False),
        ("temperature>30|name~=Kit", True),
        ("temperature>30;name~=Kit", False),
        ("temperature>30;name~=Kit|open==true", True),
        ("temperature>30;(name~=Kit|open==true)", False),
        ("(temperature>30|open==true);co2==400", True),
        ('temperature=="21.5"', False),
    ],
)
def test_q_evaluates_terms_like_the_clause(expr: str, expected: bool) -> None:
    """Each operator, value kind, path form and connective gives the 4.9 result."""
    assert parse_q(expr, expand).matches(ROOM) is expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("temperature>", "missing value after '>'"),
        ("(temperature>1", "'(' at position 0 is not closed"),
        ("temperature===1", "unknown operator"),
        ("temperature>1;", "expected an attribute name, found end of query"),
        ("temperature>1..2", "a range needs '==' or '!='"),
        ("temperature<1,2", "a list of values needs"),
        ('name=="open', "unterminated string"),
        ("name~=(", "invalid regular expression"),
        ("temperature==2024-13-01T00:00:00Z", "invalid dateTime"),
        ("temperature==2024-05-01T00:00:00", "UTC offset required"),
        ("status[level==1", "expected ']'"),
        ("temperature>1)", "unexpected ')'"),
        ("temp erature", "unexpected ' ' after attribute name"),
    ],
)
def test_q_syntax_errors_say_what_and_where(expr: str, fragment: str) -> None:
    """A malformed q raises InvalidRequest whose detail names the fault and its position."""
    with pytest.raises(InvalidRequest) as info:
        parse_q(expr, expand)
    assert fragment in info.value.detail
    assert "position" in info.value.detail


def test_q_refuses_deep_nesting_as_too_complex() -> None:
    """Nesting past the limit is TooComplexQuery, not a recursion error."""
    with pytest.raises(TooComplexQuery):
        parse_q("(" * 40 + "a==1" + ")" * 40, expand)


def test_q_reports_the_attributes_it_reads() -> None:
    """attributes() lists expanded names, used to match subscriptions."""
    expr = parse_q("temperature>1;(name~=x|!open)", expand)
    assert expr.attributes() == {NS + "temperature", NS + "name", NS + "open"}
