"""What a retrieve or query answer keeps of each entity: ``pick`` / ``omit`` (CIM 009 4.21)
and ``datasetId`` (5.7.1, 5.7.2 in v1.8), shared by GET /entities, GET /entities/{id} and
POST /entityOperations/query.  Every step is a no-op when its parameter is absent.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from city_platform.errors import BadRequestData, ResourceNotFound
from city_platform.ldcontext import Context
from city_platform.query.projection import (
    Projection,
    build_projection,
    only_datasets,
    parse_dataset_ids,
)
from city_platform.query.typeexpr import parse_type_selection
from city_platform.storage.base import Entity

# request.state attribute where POST /entityOperations/query leaves its body's join/joinLevel.
BODY_PARAMS = "ngsild_query_body"
SYSTEM_ATTRS = frozenset({"createdAt", "modifiedAt", "deletedAt"})
# The attribute name at the start of each q term (after '(', ';', '|' or '!').
_Q_NAMES = re.compile(r"(?:^|[;|(!])\s*([^\s=!<>~;|()\"'.\[{]+)")


def user_attrs(names: Sequence[str] | None) -> Sequence[str] | None:
    """``attrs`` as far as it narrows a query: system names alone do not (5.7.2.4)."""
    if not names:
        return None
    return [n for n in names if n not in SYSTEM_ATTRS] or None


def user_q(q: str | None) -> str | None:
    """``q`` as far as it narrows a query: one on system attributes alone does not (5.7.2.4)."""
    if not q:
        return None
    names = _Q_NAMES.findall(q)
    if names and all(n in SYSTEM_ATTRS for n in names):
        return None
    return q


def require_type(entity: Entity, selection: str | None, ctx: Context) -> None:
    """Retrieve Entity's ``type`` (5.7.1.4, 4.17): an entity not of that type is not found."""
    if selection is None:
        return
    parsed = parse_type_selection(selection, ctx)
    if parsed is not None and not parsed.matches(entity["type"]):
        raise ResourceNotFound(f"entity {entity['id']!r} is not of type {selection!r}")


def wildcard_local(selection: str | None, request: Request) -> None:
    """Table 6.4.3.2-1: ``type=*`` implies local=true, which shall not be set to false."""
    star = selection is not None and selection.strip() == "*"
    if star and request.query_params.get("local") == "false":
        raise BadRequestData("type=* implies local=true; local=false contradicts it")


@dataclass(frozen=True, slots=True)
class Shaping:
    projection: Projection | None = None
    datasets: frozenset[str | None] | None = None

    @classmethod
    def build(
        cls,
        ctx: Context,
        request: Request,
        *,
        pick: str | None,
        omit: str | None,
        attrs: str | None,
        datasets: str | None,
    ) -> Shaping:
        """Parse the parameters (BadRequestData for a bad one); ``join``/``joinLevel`` are
        read from the request, as they are another feature's (4.5.23) parameters."""
        params = request.query_params
        body: dict[str, Any] = getattr(request.state, BODY_PARAMS, {})  # a POST Query's
        projection = build_projection(
            ctx,
            pick=pick,
            omit=omit,
            attrs=attrs,
            join=params.get("join", body.get("join")),
            join_level=params.get("joinLevel", body.get("joinLevel")),
        )
        return cls(projection=projection, datasets=parse_dataset_ids(datasets))

    def attr_iris(self, attrs: Collection[str] | None) -> Collection[str] | None:
        """The Attributes rendering needs: a pick's, else those of ``attrs``."""
        if self.projection is not None and not self.projection.omit:
            return self.projection.attr_iris
        return attrs

    def instances(self, found: list[Entity]) -> list[Entity]:
        if self.datasets is None:
            return found
        return [only_datasets(e, self.datasets) for e in found]

    def project(self, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Project every entity; one left with no member at all is left out (as in the ETSI
        suite's expectations for ``pick`` of an Attribute an entity does not have)."""
        if self.projection is None:
            return body
        projected = (self.projection.apply(e) for e in body)
        return [e for e in projected if e]

    def project_one(self, body: dict[str, Any]) -> dict[str, Any]:
        return body if self.projection is None else self.projection.apply(body)
