"""Entities: validation of what clients send, the stored form, merging, and rendering.

Pure functions, no I/O.  The stored form keys every type and attribute by expanded IRI, so that
clients with different ``@context`` see the same data under their own terms (CIM 009 5.5.7)::

    {"id": "urn:ngsi-ld:Room:1",
     "type": ["https://uri.etsi.org/ngsi-ld/default-context/Room"],
     "createdAt": "...Z", "modifiedAt": "...Z",
     "attrs": {"<attr IRI>": [<instance>, ...]}}     # one instance per datasetId (4.5.5)

An instance keeps its reserved members by their short names (``type``, ``value``, ``object``,
``observedAt``, ``unitCode``, ``datasetId``, ``createdAt``, ``modifiedAt``, ...) and its
sub-attributes under their IRIs (an IRI always holds ``:``, a reserved name never does).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Literal, cast

from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context
from city_platform.models import PROPERTY_MEMBERS
from city_platform.query.geo import validate_geometry
from city_platform.query.scope import normalize_scope, render_scope

Entity = dict[str, Any]
Instance = dict[str, Any]
Mode = Literal["normalized", "keyValues", "concise"]

ATTR_TYPES = frozenset(
    {
        "Property",
        "Relationship",
        "GeoProperty",
        "LanguageProperty",
        "ListProperty",
        "ListRelationship",
        "JsonProperty",
        "VocabProperty",
    }
)
# Which member holds the value of each attribute type (CIM 009 4.5).
VALUE_KEY = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "JsonProperty": "json",
    "VocabProperty": "vocab",
}
RESERVED = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "valueList",
        "objectList",
        "json",
        "vocab",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
        "previousValue",
    }
)
SYSTEM = ("createdAt", "modifiedAt", "deletedAt")
# The members of the Property the gateway writes (the contract's), taken by _plain_property.
_PLAIN = PROPERTY_MEMBERS
ENTITY_MEMBERS = frozenset({"id", "type", "@context", "scope", "createdAt", "modifiedAt"})
GEO_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
DEFAULT_GEO_ATTRS = frozenset({"location", "observationSpace", "operationSpace"})

# CIM 009 4.6.2: these characters may not appear in names; ids must be URIs (RFC 3986).
_FORBIDDEN = re.compile(r"[<>\"'=;()\s\\]")
# RFC 3986 3.1 scheme ":" then only unreserved, reserved and percent-encoded octets (2.1-2.3):
# no NUL or other control character, no space, no non-ASCII (an IRI must be percent-encoded).
_URI = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$"
)


def now_iso() -> str:
    """The current UTC time in the millisecond ISO 8601 form the API returns."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_datetime(text: object, what: str) -> datetime:
    """Parse an ISO 8601 DateTime (naive means UTC), or raise BadRequestData naming ``what``."""
    if not isinstance(text, str):
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime string, got {text!r}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestData(f"{what} is not a valid ISO 8601 DateTime: {text!r}") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not _in_utc_range(value):
        raise BadRequestData(f"{what} {text!r} is before the year 1 or after 9999 in UTC")
    return value


def _in_utc_range(value: datetime) -> bool:
    """Whether an aware DateTime has a UTC form: 0001-01-01T00:00:00+14:00 is in the year 0
    and 9999-12-31T23:59:59-14:00 in 10000 (utc_key and the history's keys overflowed)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def utc_key(text: str) -> str:
    """A sortable UTC form of a validated DateTime, used for history ordering.

    Cached: a batch usually carries a handful of distinct timestamps, and this is on the
    ingestion hot path (strftime dominated the batch-upsert profile).
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    v = value.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031  # faster than strftime
        v.year,
        v.month,
        v.day,
        v.hour,
        v.minute,
        v.second,
        v.microsecond,
    )


# The same ids and names come with every batch: a bounded cache of the valid ones spares the
# regular expressions (a failed check raises, and is not cached).
@functools.lru_cache(maxsize=65536)
def _is_uri(value: str) -> bool:
    return _URI.match(value) is not None


@functools.lru_cache(maxsize=8192)
def _is_name(name: str) -> bool:
    return bool(name) and _FORBIDDEN.search(name) is None


def check_uri(value: object, what: str) -> str:
    if not isinstance(value, str) or not _is_uri(value):
        raise BadRequestData(f"{what} must be a URI (RFC 3986), got {value!r}")
    return value


def check_entity_id(value: object) -> str:
    """The id of an entity being created (CIM 009 4.5.1, 5.6.1, 5.6.7, 5.6.8: a URI).

    Also refused: '/', legal in a URI, but the id must be one path segment of
    ``/ngsi-ld/v1/entities/{entityId}`` (6.5.3, 6.6.3) and a %2F there reaches the router
    decoded, so such an entity could be created and then never retrieved, updated or deleted."""
    entity_id = check_uri(value, "entity id")
    if "/" in entity_id:
        raise BadRequestData(
            f"entity id must not contain '/': it could not be addressed as "
            f"/entities/{{entityId}}; got {entity_id!r}"
        )
    return entity_id


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _is_name(name):
        raise BadRequestData(f"{what} {name!r} is not a valid name (CIM 009 4.6.2)")
    return name


def expand_types(raw: object, ctx: Context) -> list[str]:
    if isinstance(raw, str):  # one type, the usual case
        return [ctx.expand(check_name(raw, "entity type"))]
    types = raw if isinstance(raw, list) else [raw]
    if not types:
        raise BadRequestData("entity type must not be empty")
    # A set of types (4.5.1): a name given twice is one type.
    return list(dict.fromkeys(ctx.expand(check_name(t, "entity type")) for t in types))


def _looks_normalized(raw: dict[str, Any]) -> bool:
    return raw.get("type") in ATTR_TYPES or any(k in raw for k in VALUE_KEY.values())


@functools.lru_cache(maxsize=65536)
def _is_datetime(text: str) -> bool:
    """Cached: the readings of a batch share their observedAt to the millisecond."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return False
    return _in_utc_range(value if value.tzinfo else value.replace(tzinfo=UTC))


def _observed_at(item: object, name: str) -> str:
    if not (isinstance(item, str) and _is_datetime(item)):
        parse_datetime(item, f"attribute {name!r}: observedAt")  # raises, saying why
    return cast(str, item)


def _unit_code(item: object, name: str) -> str:
    if not isinstance(item, str) or item == NGSI_LD_NULL:
        raise BadRequestData(f"attribute {name!r}: unitCode must be a string (not Null)")
    return item


# The NGSI-LD Null (CIM 009 5.2.1): it deletes in update and merge fragments (handled by
# city_platform.provision before these checks) and is BadRequestData anywhere else.
NGSI_LD_NULL = "urn:ngsi-ld:null"


def _holds_null(value: object) -> bool:
    """Whether a value is, or holds at any depth, the NGSI-LD Null (5.2.1, 5.5.4)."""
    if isinstance(value, str):
        return value == NGSI_LD_NULL
    if isinstance(value, dict):
        return any(_holds_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_null(v) for v in value)
    return False


def _plain_property(name: str, raw: object, now: str) -> Instance | None:
    """A normalized Property with at most observedAt and unitCode (nearly every reading),
    checked as :func:`normalize_instance` checks it; None for anything else."""
    if type(raw) is not dict or raw.get("type") != "Property" or not _PLAIN.issuperset(raw):
        return None
    value = raw.get("value")
    if value is None or _holds_null(value):
        return None  # the general path says what is wrong
    out: Instance = {"type": "Property", "value": value}
    for meta, item in raw.items():
        if meta == "observedAt":
            out[meta] = _observed_at(item, name)
        elif meta == "unitCode":
            out[meta] = _unit_code(item, name)
    out["createdAt"] = now
    out["modifiedAt"] = now
    return out


def normalize_instance(
    name: str, raw: object, ctx: Context, *, now: str, sub: bool = False
) -> Instance:
    """Validate one attribute instance (normalized or concise form, 4.5) into stored form."""
    plain = _plain_property(name, raw, now)
    if plain is not None:
        return plain
    if not isinstance(raw, dict) or not _looks_normalized(raw):
        # Concise form (CIM 009 4.5.3): a bare value, or a GeoJSON geometry for geo attributes.
        if isinstance(raw, dict) and raw.get("type") in GEO_TYPES and "coordinates" in raw:
            raw = {"type": "GeoProperty", "value": raw}
        else:
            raw = {"type": "Property", "value": raw}
    atype = raw.get("type")
    if atype is None:
        atype = next(
            (t for t, k in VALUE_KEY.items() if k in raw and t != "GeoProperty"), "Property"
        )
        value = raw.get("value")
        if atype == "Property" and isinstance(value, dict) and value.get("type") in GEO_TYPES:
            atype = "GeoProperty"
    if atype not in ATTR_TYPES:
        raise BadRequestData(f"attribute {name!r}: unknown attribute type {atype!r}")
    key = VALUE_KEY[atype]
    if key not in raw or raw[key] is None:
        raise BadRequestData(f"attribute {name!r}: a {atype} needs a non-null {key!r} member")
    value = raw[key]
    if _holds_null(value):
        raise BadRequestData(
            f"attribute {name!r}: the NGSI-LD Null ({NGSI_LD_NULL}) is only allowed in update, "
            "partial update and merge fragments (CIM 009 5.2.1, 5.5.4)"
        )
    out: Instance = {"type": atype, key: value}
    if atype == "Relationship":
        if isinstance(value, list):
            for item in value:
                check_uri(item, f"attribute {name!r}: object")
        else:
            check_uri(value, f"attribute {name!r}: object")
    elif atype == "GeoProperty":
        try:
            validate_geometry(value)
        except BadRequestData as exc:
            raise BadRequestData(f"attribute {name!r}: {exc.detail}") from None
    elif atype == "LanguageProperty" and not isinstance(value, dict):
        raise BadRequestData(f"attribute {name!r}: languageMap must be an object")
    for meta, item in raw.items():
        if meta in ("type", key) or meta in SYSTEM:
            continue  # system attributes are set by the platform only (4.8)
        if item == NGSI_LD_NULL:
            raise BadRequestData(
                f"attribute {name!r}: {meta} is the NGSI-LD Null, which only deletes in "
                "update, partial update and merge fragments (CIM 009 5.2.1)"
            )
        if meta == "observedAt":
            out[meta] = _observed_at(item, name)
        elif meta == "unitCode":
            out[meta] = _unit_code(item, name)
        elif meta == "datasetId":
            if sub:
                raise BadRequestData(f"sub-attribute {name!r}: datasetId is not allowed")
            out[meta] = check_uri(item, f"attribute {name!r}: datasetId")
        elif meta == "objectType" and atype in ("Relationship", "ListRelationship"):
            out[meta] = _object_type(item, ctx, name)
        elif meta in RESERVED:
            out[meta] = item
        else:
            sub_name = check_name(meta, f"attribute {name!r}: sub-attribute")
            out[ctx.expand(sub_name)] = normalize_instance(sub_name, item, ctx, now=now, sub=True)
    out["createdAt"] = now
    out["modifiedAt"] = now
    return out


def normalize_attribute(name: str, raw: object, ctx: Context, *, now: str) -> list[Instance]:
    """One attribute: a single instance, or a list of instances with distinct datasetIds."""
    check_name(name, "attribute name")
    if name in ("id", "type"):
        raise BadRequestData(f"{name!r} cannot be used as an attribute name")
    if type(raw) is dict:  # one instance, the usual case
        return [normalize_instance(name, raw, ctx, now=now)]
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(i, dict) and _looks_normalized(i) for i in raw)
    ):
        instances = [normalize_instance(name, item, ctx, now=now) for item in raw]
        seen: set[str | None] = set()
        for inst in instances:
            ds = inst.get("datasetId")
            if ds in seen:
                raise BadRequestData(f"attribute {name!r}: datasetId {ds!r} appears twice")
            seen.add(ds)
        return instances
    return [normalize_instance(name, raw, ctx, now=now)]


def normalize_fragment(doc: dict[str, Any], ctx: Context, *, now: str) -> dict[str, list[Instance]]:
    """The attributes of an entity or of an attribute fragment, keyed by IRI."""
    attrs: dict[str, list[Instance]] = {}
    for name, raw in doc.items():
        if name in ENTITY_MEMBERS:
            continue
        # A reading's plain Property straight to _plain_property, as normalize_attribute and
        # normalize_instance would take it there (ENTITY_MEMBERS holds 'id' and 'type'):
        # two calls and their checks fewer per reading.
        plain = _plain_property(name, raw, now) if type(name) is str and _is_name(name) else None
        if plain is not None:
            attrs[ctx.expand(name)] = [plain]
            continue
        attrs[ctx.expand(name)] = normalize_attribute(name, raw, ctx, now=now)
    return attrs


def normalize_entity(doc: object, ctx: Context, *, now: str) -> Entity:
    """Validate a whole entity (create, upsert, replace) into stored form."""
    if not isinstance(doc, dict):
        raise BadRequestData("an entity must be a JSON object")
    if "id" not in doc:
        raise BadRequestData("entity has no 'id'")
    if "type" not in doc:
        raise BadRequestData("entity has no 'type'")
    entity_id = check_entity_id(doc["id"])
    if entity_id == NGSI_LD_NULL:
        raise BadRequestData("the NGSI-LD Null is not an entity id (CIM 009 5.5.4)")
    entity: Entity = {
        "id": entity_id,
        "type": expand_types(doc["type"], ctx),
        "createdAt": now,
        "modifiedAt": now,
        "attrs": normalize_fragment(doc, ctx, now=now),
    }
    if "scope" in doc:  # 4.18; a dict lookup on the batch hot path, no more
        entity["scope"] = normalize_scope(doc["scope"])
    return entity


def merge_attrs(
    entity: Entity,
    attrs: dict[str, list[Instance]],
    *,
    now: str,
    overwrite: bool = True,
    only_existing: bool = False,
) -> tuple[list[str], list[str]]:
    """Merge attribute instances into ``entity`` in place (append / update semantics, 5.6.3-4).

    Returns (updated, not_updated) lists of attribute IRIs.  An instance replaces the stored
    instance with the same datasetId and keeps its createdAt.
    """
    updated: list[str] = []
    skipped: list[str] = []
    current = entity["attrs"]
    for iri, instances in attrs.items():
        existing = current.get(iri)
        if existing is None and only_existing:
            skipped.append(iri)
            continue
        target = existing if existing is not None else []
        changed = False
        for inst in instances:
            ds = inst.get("datasetId")
            idx = -1
            for i, old in enumerate(target):  # a loop, not next(genexpr): per reading
                if old.get("datasetId") == ds:
                    idx = i
                    break
            if idx < 0:
                if only_existing:
                    continue
                target.append(inst)
            elif not overwrite:
                continue
            else:
                inst["createdAt"] = target[idx].get("createdAt", now)
                target[idx] = inst
            changed = True
        if changed:
            current[iri] = target
            updated.append(iri)
        else:
            skipped.append(iri)
    if updated:
        entity["modifiedAt"] = now
    return updated, skipped


def instance_value(inst: Instance) -> Any:
    return inst.get(VALUE_KEY.get(inst.get("type", "Property"), "value"))


# Simplified representation (CIM 009 4.5.4): these types keep their value key, so that a
# client tells a languageMap, a JSON value or a vocab from a plain Property value.
_WRAPPED = {"LanguageProperty": "languageMap", "JsonProperty": "json", "VocabProperty": "vocab"}


def _compact_vocab(value: Any, ctx: Context | None) -> Any:
    """A VocabProperty's ``vocab`` compacted with the answer's @context (5.7.1.5, 5.7.2.5)."""
    if ctx is None:
        return value
    if isinstance(value, str):
        return ctx.compact(value)
    if isinstance(value, list):
        return [ctx.compact(v) if isinstance(v, str) else v for v in value]
    return value


def simplified_value(inst: Instance, ctx: Context | None = None) -> Any:
    """One instance in the simplified (keyValues) representation (4.5.4)."""
    atype = inst.get("type", "Property")
    key = _WRAPPED.get(atype)
    if key == "vocab":
        return {key: _compact_vocab(inst.get(key), ctx)}
    if key is not None:
        return {key: inst.get(key)}
    value = instance_value(inst)
    if atype == "ListRelationship" and isinstance(value, list):
        return [v.get("object") if isinstance(v, dict) else v for v in value]
    return value


def simplified_attribute(instances: list[Instance], ctx: Context | None = None) -> Any:
    """An Attribute in the simplified representation: its value, or for a multi-attribute
    the ``dataset`` map of each instance's value by datasetId, ``@none`` for the default
    instance (4.5.4)."""
    if len(instances) == 1:
        return simplified_value(instances[0], ctx)
    return {"dataset": {i.get("datasetId", "@none"): simplified_value(i, ctx) for i in instances}}


def _object_type(item: object, ctx: Context, name: str) -> str | list[str]:
    """A Relationship's ``objectType`` (4.5.23): entity type name(s), stored expanded."""
    if isinstance(item, str):
        return ctx.expand(check_name(item, f"attribute {name!r}: objectType"))
    if isinstance(item, list) and item and all(isinstance(i, str) for i in item):
        return [ctx.expand(check_name(i, f"attribute {name!r}: objectType")) for i in item]
    raise BadRequestData(f"attribute {name!r}: objectType must be a type name or a list of them")


def render_instance(inst: Instance, ctx: Context, mode: Mode, sys_attrs: bool) -> Any:
    if mode == "keyValues":
        return simplified_value(inst, ctx)
    out: dict[str, Any] = {}
    for key, item in inst.items():
        if key in SYSTEM and not sys_attrs:
            continue
        if ":" in key and key not in RESERVED:
            out[ctx.compact(key)] = render_instance(item, ctx, mode, sys_attrs)
        elif key == "vocab" and inst.get("type") == "VocabProperty":
            out[key] = _compact_vocab(item, ctx)
        elif key == "objectType":  # a type name, compacted as entity types are
            out[key] = (
                [ctx.compact(t) for t in item] if isinstance(item, list) else ctx.compact(item)
            )
        else:
            out[key] = item
    if mode == "concise":
        atype = out.pop("type", "Property")
        # The concise form leaves out "type" where the value member implies it: "object" a
        # Relationship, "languageMap" a LanguageProperty, "valueList" a ListProperty, ...
        # (4.5.x concise representations); only "value" stands for Property and GeoProperty.
        implied_by = VALUE_KEY.get(atype)
        if atype not in ("Property", "GeoProperty") and implied_by not in out:
            out["type"] = atype
        if len(out) == 1 and atype in ("Property", "GeoProperty") and "value" in out:
            return out["value"]
    return out


def render_entity(
    entity: Entity,
    ctx: Context,
    *,
    attrs: Collection[str] | None = None,
    mode: Mode = "normalized",
    sys_attrs: bool = False,
) -> dict[str, Any]:
    """Compact a stored entity for a client under its context (5.2.2 / 4.5.3 representations)."""
    types = [ctx.compact(t) for t in entity["type"]]
    out: dict[str, Any] = {"id": entity["id"], "type": types[0] if len(types) == 1 else types}
    if "scope" in entity:  # 4.18
        out["scope"] = render_scope(entity["scope"])
    if sys_attrs and mode != "keyValues":
        for key in ("createdAt", "modifiedAt"):
            if key in entity:
                out[key] = entity[key]
    for iri, instances in entity["attrs"].items():
        if attrs is not None and iri not in attrs:
            continue
        if mode == "keyValues":
            out[ctx.compact(iri)] = simplified_attribute(instances, ctx)
            continue
        rendered = [render_instance(i, ctx, mode, sys_attrs) for i in instances]
        out[ctx.compact(iri)] = rendered[0] if len(rendered) == 1 else rendered
    return out
