"""The contract between the gateway and the platform: what goes over the wire between them.

DESIGN.md section 2 lets ``gateway/`` import this module and nothing else of ``city_platform``.
It holds only what both sides must agree on, each defined once here for the side that writes
it and the side that reads it:

- the entity ids of the data model, ``urn:ngsi-ld:<Type>:<id>`` (DESIGN.md section 3);
- the attribute shapes the gateway writes and the platform's ingestion fast path expects
  (CIM 009 5.2.5 Property, 5.2.6 Relationship, 5.2.7 GeoProperty with a GeoJSON ``value``);
- the batch upsert the uplink posts (CIM 009 5.6.8) and the BatchOperationResult (5.2.16) with
  its BatchEntityError items (5.2.17) the platform answers a partial success (207) with;
- the ProblemDetails body (RFC 7807 section 3.1) and the NGSI-LD error type URIs (5.5.2) the
  platform answers with, per entity inside a BatchOperationResult too.

Shapes are ``TypedDict``: they cost nothing at run time (the gateway's normalizer builds plain
dicts on its hot path; nothing is validated or constructed per reading) and mypy checks both
sides against them.  The module imports only ``typing``, so the gateway does not pull in FastAPI,
Starlette or SQLite by importing it (tests/city_platform/test_models.py checks).
"""

# No ``from __future__ import annotations`` here: TypedDict tells NotRequired keys from required
# ones only with evaluated annotations, and the platform reads PROPERTY_MEMBERS from them.
from typing import Any, Final, Literal, NotRequired, TypedDict

__all__ = [
    "ERROR_BASE",
    "ID_PREFIX",
    "PROPERTY_MEMBERS",
    "UPSERT_PATH",
    "BatchEntityError",
    "BatchOperationResult",
    "EntityFragment",
    "ErrorType",
    "GeoProperty",
    "Point",
    "ProblemDetails",
    "Property",
    "Relationship",
    "entity_id",
    "entity_id_prefix",
    "error_type_uri",
    "local_id",
]

# -- entity ids -------------------------------------------------------------------------------

ID_PREFIX: Final = "urn:ngsi-ld:"


def entity_id_prefix(entity_type: str) -> str:
    """``urn:ngsi-ld:<Type>:``, what every id of an entity of ``entity_type`` starts with."""
    return f"{ID_PREFIX}{entity_type}:"


def entity_id(entity_type: str, local: str) -> str:
    """``urn:ngsi-ld:<Type>:<id>``: the id of a device's entity (DESIGN.md section 3)."""
    return f"{ID_PREFIX}{entity_type}:{local}"


def local_id(entity_type: str, ngsi_id: str) -> str | None:
    """The ``<id>`` of ``urn:ngsi-ld:<Type>:<id>``; None if the id is not of that form."""
    prefix = entity_id_prefix(entity_type)
    if not ngsi_id.startswith(prefix) or len(ngsi_id) == len(prefix):
        return None
    return ngsi_id[len(prefix) :]


# -- attributes and entities (normalized representation, CIM 009 5.2.4 - 5.2.7) --------------


class Property(TypedDict):
    """A Property (CIM 009 5.2.5) as the gateway writes a reading: ``observedAt`` is UTC ISO 8601
    with milliseconds and ``Z``, ``unitCode`` a UN/CEFACT common code (DESIGN.md section 3)."""

    type: Literal["Property"]
    value: Any
    observedAt: NotRequired[str]
    unitCode: NotRequired[str]


# The members of a plain Property: the platform takes such a Property by its fast path.
PROPERTY_MEMBERS: Final = Property.__required_keys__ | Property.__optional_keys__


class Point(TypedDict):
    """A GeoJSON Point (RFC 7946 section 3.1.2): ``[longitude, latitude]``."""

    type: Literal["Point"]
    coordinates: list[float]


class GeoProperty(TypedDict):
    """A GeoProperty (CIM 009 5.2.7) such as ``location``, its value a GeoJSON geometry."""

    type: Literal["GeoProperty"]
    value: Point
    observedAt: NotRequired[str]


class Relationship(TypedDict):
    """A Relationship (CIM 009 5.2.6) such as ``refDevice``, ``object`` the target's id."""

    type: Literal["Relationship"]
    object: str


# An entity fragment: ``id`` and ``type`` plus attributes by name (Property, GeoProperty,
# Relationship).  A plain dict: a TypedDict cannot have arbitrarily named members (Python 3.11).
EntityFragment = dict[str, Any]

# -- batch operations (CIM 009 5.6.8 upsert, 5.2.16/5.2.17 its result) -----------------------

# Posted with ``?options=update`` (merge the attributes, do not replace the entity), a JSON
# array of entity fragments; 201/204 all written, 207 a BatchOperationResult, 400 none.
UPSERT_PATH: Final = "/ngsi-ld/v1/entityOperations/upsert"

# -- errors (RFC 7807, CIM 009 5.5.2) --------------------------------------------------------

ERROR_BASE: Final = "https://uri.etsi.org/ngsi-ld/errors/"
ErrorType = Literal[
    "InvalidRequest",
    "BadRequestData",
    "AlreadyExists",
    "OperationNotSupported",
    "ResourceNotFound",
    "InternalError",
    "TooComplexQuery",
    "TooManyResults",
    "LdContextNotAvailable",
    "NonexistentTenant",
    "NotAcceptable",
    "UnsupportedMediaType",
]


class ProblemDetails(TypedDict):
    """An error body (RFC 7807 section 3.1): ``type`` one of the NGSI-LD error type URIs."""

    type: str
    title: str
    detail: NotRequired[str]


def error_type_uri(name: ErrorType) -> str:
    """The error type URI of ``name`` (CIM 009 5.5.2)."""
    return ERROR_BASE + name


class BatchEntityError(TypedDict):
    """One entity a batch operation did not write and why (CIM 009 5.2.17)."""

    entityId: object  # as the client sent it: a malformed entity's id may be anything, or null
    error: ProblemDetails


class BatchOperationResult(TypedDict):
    """The answer to a partly successful batch operation (CIM 009 5.2.16, HTTP 207)."""

    success: list[str]
    errors: list[BatchEntityError]
