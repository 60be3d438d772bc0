"""Context source registrations (CIM 009 5.2.9 CSourceRegistration, 5.2.10 RegistrationInfo,
5.2.8 EntityInfo): validation into the stored form, rendering back, and matching.

The stored form keeps entity types and attribute names as expanded IRIs (so a query made with
another @context still matches), the members the client gave otherwise as written, and the
@context the registration was made with (``jsonldContext``).  Members outside Table 5.2.9-1 are
Context Source Properties (5.2.9: "additional members"), kept under ``properties`` by IRI; ``q``
and ``csf`` of Query Context Source Registrations (5.10.2) and of csource subscriptions test them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from city_platform import entities as ent
from city_platform.errors import BadRequestData, InvalidRequest
from city_platform.ldcontext import Context
from city_platform.query.geo import GeoQuery, parse_geoquery
from city_platform.query.q import QExpr, parse_q
from city_platform.query.regex import RegexError, compile_regex, matches
from city_platform.query.typeexpr import parse_type_selection

CSR_TYPE = "ContextSourceRegistration"
NGSI_LD_NULL = "urn:ngsi-ld:null"
# 4.3.6.2: the registration modes; inclusive is the default (5.2.9).
MODES = ("inclusive", "exclusive", "redirect", "auxiliary")
DEFAULT_OPERATIONS = ["federationOps"]  # 5.2.9: the default operations of a registration
# Operations (4.3.6.3, Table 4.3.6.3-1) that make a registration answer reads we forward.
QUERY_OPS = frozenset({"federationOps", "retrieveOps", "redirectionOps", "queryEntity"})
RETRIEVE_OPS = frozenset({"federationOps", "retrieveOps", "redirectionOps", "retrieveEntity"})
POST_QUERY_OPS = frozenset({"federationOps", "retrieveOps", "redirectionOps", "queryBatch"})
GEO_MEMBERS = ("location", "observationSpace", "operationSpace")
INTERVAL_MEMBERS = ("observationInterval", "managementInterval")
STRING_MEMBERS = ("registrationName", "description", "tenant", "refreshRate")
# Table 5.2.9-2: members the broker maintains; a client's value is not taken.
STATUS_MEMBERS = ("status", "timesSent", "timesFailed", "lastSuccess", "lastFailure")
KNOWN = frozenset(
    {
        "id",
        "type",
        "@context",
        "information",
        "endpoint",
        "mode",
        "operations",
        "expiresAt",
        "contextSourceInfo",
        "scope",
        "management",
        "createdAt",
        "modifiedAt",
        *GEO_MEMBERS,
        *INTERVAL_MEMBERS,
        *STRING_MEMBERS,
        *STATUS_MEMBERS,
    }
)
# The host, then nothing or a path/query/fragment: written so that a long URL ending in a space
# fails in linear time (host+[^\s]* backtracked quadratically: 1.2 s for 20 000 characters).
_URL = re.compile(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$")


def _is_null(value: object) -> bool:
    return value is None or value == NGSI_LD_NULL


def _check_entity_info(raw: object, ctx: Context) -> dict[str, str]:
    """EntityInfo (5.2.8): ``type`` mandatory, ``id`` a URI, ``idPattern`` a regex."""
    if not isinstance(raw, dict) or "type" not in raw:
        raise BadRequestData("every information[].entities[] item needs a 'type' (5.2.8)")
    out = {"type": ctx.expand(ent.check_name(raw["type"], "information[].entities[].type"))}
    if "id" in raw:
        out["id"] = ent.check_uri(raw["id"], "information[].entities[].id")
    if "idPattern" in raw:
        pattern = raw["idPattern"]
        try:
            compile_regex(pattern)  # RE2: linear-time matching, see query/regex.py
        except RegexError as exc:
            raise BadRequestData(
                f"idPattern {pattern!r} is not a regular expression: {exc}"
            ) from None
        out["idPattern"] = pattern
    unknown = set(raw) - {"type", "id", "idPattern"}
    if unknown:
        raise BadRequestData(f"unknown EntityInfo members: {', '.join(sorted(unknown))}")
    return out


def _check_information(raw: object, ctx: Context) -> list[dict[str, Any]]:
    """RegistrationInfo (5.2.10): at least one of entities, propertyNames, relationshipNames."""
    if not isinstance(raw, list) or not raw:
        raise BadRequestData("information must be a non-empty array of RegistrationInfo (5.2.10)")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadRequestData("every information item must be an object (5.2.10)")
        unknown = set(item) - {"entities", "propertyNames", "relationshipNames"}
        if unknown:
            raise BadRequestData(f"unknown RegistrationInfo members: {', '.join(sorted(unknown))}")
        if not item:
            raise BadRequestData(
                "a RegistrationInfo needs entities, propertyNames or relationshipNames (5.2.10)"
            )
        info: dict[str, Any] = {}
        if "entities" in item:
            entities = item["entities"]
            if not isinstance(entities, list) or not entities:
                raise BadRequestData("information[].entities must be a non-empty array")
            info["entities"] = [_check_entity_info(e, ctx) for e in entities]
        for key in ("propertyNames", "relationshipNames"):
            if key in item:
                names = item[key]
                if not isinstance(names, list) or not names:
                    raise BadRequestData(f"information[].{key} must be a non-empty array")
                info[key] = [ctx.expand(ent.check_name(n, f"information[].{key}")) for n in names]
        out.append(info)
    return out


def _check_geometry(name: str, raw: object) -> dict[str, Any]:
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("type"), str)
        or ("coordinates" not in raw and "geometries" not in raw)
    ):
        raise BadRequestData(f"{name} must be a GeoJSON geometry")
    return raw


def _check_interval(name: str, raw: object) -> dict[str, str]:
    """TimeInterval (5.2.11): startAt mandatory, endAt optional and not before it."""
    if not isinstance(raw, dict) or "startAt" not in raw or set(raw) - {"startAt", "endAt"}:
        raise BadRequestData(f"{name} must be a TimeInterval with startAt (5.2.11)")
    start = ent.parse_datetime(raw["startAt"], f"{name}.startAt")
    if "endAt" in raw and ent.parse_datetime(raw["endAt"], f"{name}.endAt") < start:
        raise BadRequestData(f"{name}.endAt is before its startAt")
    return {k: str(v) for k, v in raw.items()}


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # an HTTP field name (RFC 9110 5.1)
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]{0,4096}")


def _check_key_values(raw: object) -> list[dict[str, str]]:
    """contextSourceInfo (5.2.9): KeyValuePairs sent as HTTP headers to the source, so each
    key is a field name and each value a field value."""
    if not isinstance(raw, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str)
        for i in raw
    ):
        raise BadRequestData("contextSourceInfo must be an array of {key, value} strings")
    for i in raw:
        if not _TOKEN.fullmatch(i["key"]) or not _FIELD_VALUE.fullmatch(i["value"]):
            raise BadRequestData(
                f"contextSourceInfo {i['key']!r}: not an HTTP header name and value"
            )
    return [{"key": i["key"], "value": i["value"]} for i in raw]


def _apply(doc: dict[str, Any], out: dict[str, Any], ctx: Context, now: str) -> None:
    """Validate the members of ``doc`` into ``out`` (create and update share this)."""
    for key, value in doc.items():
        if key in ("id", "type", "@context", "createdAt", "modifiedAt", *STATUS_MEMBERS):
            continue
        if _is_null(value) and key not in ("information", "endpoint"):
            out.pop(key, None)  # NGSI-LD Null removes an optional member (5.9.3)
            if key not in KNOWN:
                out.get("properties", {}).pop(ctx.expand(key), None)
            continue
        if key == "information":
            out["information"] = _check_information(value, ctx)
        elif key == "endpoint":
            if not isinstance(value, str) or not _URL.match(value):
                raise BadRequestData(f"endpoint must be an http(s) URI, got {value!r}")
            out["endpoint"] = value.rstrip("/")
        elif key == "mode":
            if value not in MODES:
                raise BadRequestData(f"mode must be one of {', '.join(MODES)} (4.3.6.2)")
            out["mode"] = value
        elif key == "operations":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(o, str) and o for o in value)
            ):
                raise BadRequestData("operations must be a non-empty array of names (4.3.6.3)")
            out["operations"] = list(value)
        elif key == "expiresAt":
            when = ent.parse_datetime(value, "expiresAt")
            if when <= ent.parse_datetime(now, "now"):
                raise BadRequestData("expiresAt must be in the future (5.9.2.4)")
            out["expiresAt"] = value
        elif key in GEO_MEMBERS:
            out[key] = _check_geometry(key, value)
        elif key in INTERVAL_MEMBERS:
            out[key] = _check_interval(key, value)
        elif key in STRING_MEMBERS:
            if not isinstance(value, str):
                raise BadRequestData(f"{key} must be a string")
            out[key] = value
        elif key == "contextSourceInfo":
            out[key] = _check_key_values(value)
        elif key == "scope":
            scopes = [value] if isinstance(value, str) else value
            if not isinstance(scopes, list) or not all(
                isinstance(s, str) and s.startswith("/") for s in scopes
            ):
                raise BadRequestData("scope must be a /path or an array of them (4.18)")
            out[key] = scopes
        elif key == "management":
            if not isinstance(value, dict):
                raise BadRequestData("management must be an object (5.2.9)")
            timeout = value.get("timeout")
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
            ):
                raise BadRequestData("management.timeout must be a positive number of ms")
            out[key] = value
        else:  # a Context Source Property (5.2.9 "additional members")
            props = out.setdefault("properties", {})
            props[ctx.expand(ent.check_name(key, "registration property"))] = value
    if "information" not in out:
        raise BadRequestData("a registration needs information (5.2.9)")
    if "endpoint" not in out:
        raise BadRequestData("a registration needs an endpoint (5.2.9)")
    # a Null mode or operations (5.9.3) falls back to the defaults of 5.2.9
    out.setdefault("mode", "inclusive")
    out.setdefault("operations", list(DEFAULT_OPERATIONS))
    _check_mode(out)


# 5.9.2.4: an auxiliary registration offers no writes: retrievals, and the federationOps group
# (the default operations: retrievals and subscriptions, 4.3.6.3).
AUXILIARY_OPS = frozenset(
    {
        "federationOps",
        "createSubscription",
        "updateSubscription",
        "retrieveSubscription",
        "querySubscription",
        "deleteSubscription",
        "retrieveOps",
        "retrieveEntity",
        "queryEntity",
        "queryBatch",
        "retrieveTemporal",
        "queryTemporal",
        "retrieveEntityTypes",
        "retrieveEntityTypeDetails",
        "retrieveEntityTypeInfo",
        "retrieveAttrTypes",
        "retrieveAttrTypeDetails",
        "retrieveAttrTypeInfo",
    }
)


def _check_mode(out: dict[str, Any]) -> None:
    """4.3.6.3: an exclusive registration relates to specific Attributes of single Entities
    (every RegistrationInfo names entity ids, no idPattern, and Attribute names); 5.9.2.4: an
    auxiliary registration offers no write operations."""
    mode = out.get("mode", "inclusive")
    if mode == "exclusive":
        for info in out["information"]:
            entities = info.get("entities")
            if not entities or any("id" not in e or "idPattern" in e for e in entities):
                raise BadRequestData(
                    "an exclusive registration names entity ids, not types or idPatterns (4.3.6.3)"
                )
            if not info.get("propertyNames") and not info.get("relationshipNames"):
                raise BadRequestData(
                    "an exclusive registration names the Attributes it holds (4.3.6.3)"
                )
    if mode == "auxiliary":
        extra = set(out.get("operations", ())) - AUXILIARY_OPS
        if extra:
            raise BadRequestData(
                f"an auxiliary registration offers no writes, not {', '.join(sorted(extra))}"
                " (5.9.2.4)"
            )


def attribute_keys(stored: dict[str, Any]) -> set[tuple[str, str]]:
    """(entity id, attribute IRI) pairs an exclusive or redirect registration names; ("", "")
    stands for "any" on either side (4.3.6.3 overlap rule)."""
    keys: set[tuple[str, str]] = set()
    for info in stored["information"]:
        ids = [e.get("id", "") for e in info.get("entities", [{"id": ""}])]
        names = [*info.get("propertyNames", ()), *info.get("relationshipNames", ())] or [""]
        keys.update((i, n) for i in ids for n in names)
    return keys


def overlaps(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> bool:
    return any(
        (ia == ib or "" in (ia, ib)) and (na == nb or "" in (na, nb))
        for ia, na in a
        for ib, nb in b
    )


def new_registration(doc: object, ctx: Context, *, context_source: Any, now: str) -> dict[str, Any]:
    """Register Context Source (5.9.2): the stored form of a valid request body."""
    if not isinstance(doc, dict):
        raise BadRequestData("a registration must be a JSON object (5.2.9)")
    if doc.get("type") != CSR_TYPE:
        raise BadRequestData(f"a registration's type must be {CSR_TYPE!r} (5.2.9)")
    reg_id = doc.get("id") or f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}"
    out: dict[str, Any] = {
        "id": ent.check_uri(reg_id, "registration id"),
        "type": CSR_TYPE,
        "mode": "inclusive",
        "operations": list(DEFAULT_OPERATIONS),
        "jsonldContext": context_source,
        "createdAt": now,
        "modifiedAt": now,
    }
    _apply(doc, out, ctx, now)
    return out


def update_registration(
    stored: dict[str, Any], fragment: object, ctx: Context, *, now: str
) -> dict[str, Any]:
    """Update Context Source Registration (5.9.3): merge a fragment into the stored form."""
    if not isinstance(fragment, dict) or not fragment:
        raise BadRequestData("the body must be a non-empty registration fragment (5.9.3)")
    if fragment.get("id", stored["id"]) != stored["id"]:
        raise BadRequestData("the id of a registration cannot change")
    if fragment.get("type", CSR_TYPE) != CSR_TYPE:
        raise BadRequestData(f"the type of a registration is {CSR_TYPE!r}")
    for key in ("information", "endpoint"):
        if key in fragment and _is_null(fragment[key]):
            raise BadRequestData(f"{key} is mandatory and cannot be removed")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in stored.items()}
    _apply(fragment, out, ctx, now)
    out["modifiedAt"] = now
    return out


def render_registration(
    stored: dict[str, Any], ctx: Context, *, sys_attrs: bool = False
) -> dict[str, Any]:
    """The registration as a client sees it, compacted with ``ctx``."""
    out: dict[str, Any] = {"id": stored["id"], "type": CSR_TYPE}
    for key in ("registrationName", "description"):
        if key in stored:
            out[key] = stored[key]
    info_out = []
    for info in stored["information"]:
        item: dict[str, Any] = {}
        if "entities" in info:
            item["entities"] = [{**e, "type": ctx.compact(e["type"])} for e in info["entities"]]
        for key in ("propertyNames", "relationshipNames"):
            if key in info:
                item[key] = [ctx.compact(n) for n in info[key]]
        info_out.append(item)
    out["information"] = info_out
    for key in (
        "tenant",
        *INTERVAL_MEMBERS,
        *GEO_MEMBERS,
        "expiresAt",
        "endpoint",
        "contextSourceInfo",
        "scope",
        "mode",
        "operations",
        "refreshRate",
        "management",
        *STATUS_MEMBERS,
    ):
        if key in stored:
            out[key] = stored[key]
    for iri, value in stored.get("properties", {}).items():
        out[ctx.compact(iri)] = value
    if sys_attrs:
        out["createdAt"] = stored["createdAt"]
        out["modifiedAt"] = stored["modifiedAt"]
    return out


def is_expired(stored: dict[str, Any], now: str) -> bool:
    expires = stored.get("expiresAt")
    return bool(expires) and ent.utc_key(expires) <= ent.utc_key(now)


def as_entity(stored: dict[str, Any], expand: Callable[[str], str]) -> dict[str, Any]:
    """The registration as a normalized entity, so the q and geo-query evaluators of entities
    test its Context Source Properties and its location members (5.10.2 ``q``/``csf``, geo)."""
    attrs: dict[str, list[dict[str, Any]]] = {}
    for iri, value in stored.get("properties", {}).items():
        if isinstance(value, dict) and value.get("type") in ("Property", "Relationship"):
            attrs[iri] = [value]
        else:
            attrs[iri] = [{"type": "Property", "value": value}]
    for key in GEO_MEMBERS:
        if key in stored:
            attrs[expand(key)] = [{"type": "GeoProperty", "value": stored[key]}]
    for key in ("registrationName", "description", "endpoint", "mode", "tenant"):
        if key in stored:
            attrs[expand(key)] = [{"type": "Property", "value": stored[key]}]
    return {"id": stored["id"], "type": [expand(CSR_TYPE)], "attrs": attrs}


TIMERELS = ("before", "after", "between")
TIMEPROPERTIES = {
    "observedAt": "observationInterval",
    "createdAt": "managementInterval",
    "modifiedAt": "managementInterval",
}


@dataclass(frozen=True)
class TemporalFilter:
    """The temporal query of Query Context Source Registrations (5.10.2, 4.11), matched against
    the registration's observationInterval (timeproperty observedAt, the default) or its
    managementInterval (createdAt, modifiedAt): ``before`` holds when the interval starts
    before timeAt, ``after`` when it has not ended by timeAt, ``between`` when it overlaps
    [timeAt, endTimeAt).  A registration without that interval does not match."""

    timerel: str
    time_at: str  # UTC keys
    end_time_at: str | None
    member: str

    @classmethod
    def parse(
        cls,
        timerel: str | None,
        time_at: str | None,
        end_time_at: str | None,
        timeproperty: str | None,
    ) -> TemporalFilter | None:
        if timerel is None and time_at is None and end_time_at is None:
            if timeproperty is not None and timeproperty not in TIMEPROPERTIES:
                raise BadRequestData(f"timeproperty must be one of {', '.join(TIMEPROPERTIES)}")
            return None
        if timerel not in TIMERELS:
            raise BadRequestData(f"timerel must be one of {', '.join(TIMERELS)} (4.11)")
        if time_at is None:
            raise BadRequestData("timerel needs timeAt (4.11)")
        ent.parse_datetime(time_at, "timeAt")
        end = None
        if timerel == "between":
            if end_time_at is None:
                raise BadRequestData("timerel=between needs endTimeAt (4.11)")
            ent.parse_datetime(end_time_at, "endTimeAt")
            end = ent.utc_key(end_time_at)
        prop = timeproperty or "observedAt"
        if prop not in TIMEPROPERTIES:
            raise BadRequestData(f"timeproperty must be one of {', '.join(TIMEPROPERTIES)}")
        return cls(timerel, ent.utc_key(time_at), end, TIMEPROPERTIES[prop])

    def matches(self, stored: dict[str, Any]) -> bool:
        interval = stored.get(self.member)
        if not isinstance(interval, dict) or "startAt" not in interval:
            return False
        start = ent.utc_key(interval["startAt"])
        end = ent.utc_key(interval["endAt"]) if interval.get("endAt") else None
        if self.timerel == "before":
            return start < self.time_at
        if self.timerel == "after":
            return end is None or end > self.time_at
        assert self.end_time_at is not None
        return start < self.end_time_at and (end is None or end > self.time_at)


def _entity_ok(
    info_entities: list[dict[str, str]] | None,
    type_ok: Callable[[str], bool] | None,
    ids: frozenset[str] | None,
    id_pattern: str | None,
) -> bool:
    """Whether one RegistrationInfo's entities can hold an entity the selection asks for."""
    if info_entities is None:  # attributes of any entity (5.2.10)
        return True
    for e in info_entities:
        if type_ok is not None and not type_ok(e["type"]):
            continue
        if ids is not None and "id" in e and e["id"] not in ids:
            continue
        if (
            ids is not None
            and "idPattern" in e
            and not any(matches(e["idPattern"], i) for i in ids)
        ):
            continue
        if id_pattern is not None and "id" in e and not matches(id_pattern, e["id"]):
            continue
        return True
    return False


def _attrs_ok(info: dict[str, Any], attrs: frozenset[str] | None) -> bool:
    names = [*info.get("propertyNames", ()), *info.get("relationshipNames", ())]
    return attrs is None or not names or not attrs.isdisjoint(names)


@dataclass(frozen=True)
class Selection:
    """What a query (of entities or of registrations) asks for, to match registrations with
    (5.10.2, 5.12 "matching context source registrations"); names are expanded IRIs."""

    type_ok: Callable[[str], bool] | None = None
    ids: frozenset[str] | None = None
    id_pattern: str | None = None
    attrs: frozenset[str] | None = None
    q: QExpr | None = None
    csf: QExpr | None = None
    geo: GeoQuery | None = None
    geo_attr: str = ""
    temporal: TemporalFilter | None = None

    @classmethod
    def build(
        cls,
        ctx: Context,
        *,
        types: str | None = None,
        ids: Iterable[str] | None = None,
        id_pattern: str | None = None,
        attrs: Iterable[str] | None = None,
        q: str | None = None,
        csf: str | None = None,
        georel: str | None = None,
        geometry: str | None = None,
        coordinates: str | None = None,
        geoproperty: str | None = None,
        temporal: TemporalFilter | None = None,
    ) -> Selection:
        type_ok = None
        if types is not None and types.strip() != "*":
            selection = parse_type_selection(types, ctx)
            if selection is not None:
                names = selection.any_of
                type_ok = names.__contains__
        if id_pattern is not None:
            try:
                compile_regex(id_pattern)  # RE2, see query/regex.py
            except RegexError as exc:
                raise BadRequestData(f"idPattern is not a regular expression: {exc}") from None
        try:
            q_expr = parse_q(q, ctx.expand) if q else None
            csf_expr = parse_q(csf, ctx.expand) if csf else None
        except InvalidRequest as exc:
            raise BadRequestData(exc.detail) from None
        geo = parse_geoquery(
            georel=georel, geometry=geometry, coordinates=coordinates, geoproperty=geoproperty
        )
        return cls(
            type_ok=type_ok,
            ids=frozenset(ent.check_uri(i, "id") for i in ids) if ids is not None else None,
            id_pattern=id_pattern,
            attrs=(
                frozenset(ctx.expand(ent.check_name(a, "attrs")) for a in attrs) if attrs else None
            ),
            q=q_expr,
            csf=csf_expr,
            geo=geo,
            geo_attr=ctx.expand(geo.geoproperty) if geo is not None else "",
            temporal=temporal,
        )

    def info_matches(self, stored: dict[str, Any]) -> bool:
        """Some RegistrationInfo of the registration can hold what is asked for."""
        return any(
            _entity_ok(info.get("entities"), self.type_ok, self.ids, self.id_pattern)
            and _attrs_ok(info, self.attrs)
            for info in stored["information"]
        )

    def csf_matches(self, stored: dict[str, Any], expand: Callable[[str], str]) -> bool:
        """The context source filter (``csf``) on the Context Source Properties, when given."""
        return self.csf is None or self.csf.matches(as_entity(stored, expand))

    def matches(self, stored: dict[str, Any], expand: Callable[[str], str]) -> bool:
        """Query Context Source Registrations (5.10.2): information, q/csf and geo-query."""
        if not self.info_matches(stored):
            return False
        if self.temporal is not None and not self.temporal.matches(stored):
            return False
        if self.q is None and self.csf is None and self.geo is None:
            return True
        entity = as_entity(stored, expand)
        if self.q is not None and not self.q.matches(entity):
            return False
        if self.csf is not None and not self.csf.matches(entity):
            return False
        if self.geo is not None:
            instances = entity["attrs"].get(self.geo_attr) or []
            return any(self.geo.matches(i["value"]) for i in instances)
        return True


def subscription_matches(
    sub: dict[str, Any], reg: dict[str, Any], entity_check: Callable[[dict[str, Any]], bool] | None
) -> bool:
    """Whether a registration matches a csource subscription (5.11.7): one of its entity
    selectors and its watched attributes fall in a RegistrationInfo, and its q / geoQ
    (``entity_check``, evaluated on :func:`as_entity`) hold."""
    selectors = sub.get("entities")
    watched = frozenset(sub["watchedAttributes"]) if sub.get("watchedAttributes") else None
    hit = False
    for info in reg["information"]:
        if not _attrs_ok(info, watched):
            continue
        if not selectors:
            hit = True
            break
        for sel in selectors:
            ids = frozenset([sel["id"]]) if "id" in sel else None
            if _entity_ok(info.get("entities"), sel["type"].__eq__, ids, sel.get("idPattern")):
                hit = True
                break
        if hit:
            break
    return hit and (entity_check is None or entity_check(reg))
