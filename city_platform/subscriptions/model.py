"""Subscriptions (CIM 009 5.2.12): validation into the stored form, and rendering back.

The stored form keeps entity types and attribute names as expanded IRIs, the ``q`` and
``geoQ`` as written (they are parsed again with the subscription's context when it is loaded),
and the ``@context`` the subscription was made with (``jsonldContext``), so that notifications
are compacted with the subscriber's terms.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from typing import Any, Literal

from city_platform import entities as ent
from city_platform.api.representation import parse_join, parse_lang
from city_platform.errors import BadRequestData, OperationNotSupported, PlatformError
from city_platform.ldcontext import Context
from city_platform.query.projection import Projection, build_projection, parse_dataset_ids
from city_platform.query.q import parse_q
from city_platform.query.regex import RegexError, compile_regex
from city_platform.search import EntitySearch

Format = Literal["normalized", "keyValues", "concise"]
FORMATS = ("normalized", "keyValues", "concise")
# 5.2.15: JSON, JSON-LD or GeoJSON (NotificationData as a FeatureCollection)
ACCEPTS = ("application/json", "application/ld+json", "application/geo+json")
TRIGGERS = frozenset(
    {
        "entityCreated",
        "entityUpdated",
        "entityDeleted",
        "attributeCreated",
        "attributeUpdated",
        "attributeDeleted",
    }
)
# 5.2.12: without notificationTrigger, attribute creation and update notify.
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
STATUS_MEMBERS = (
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastSuccess",
    "lastFailure",
)
UPDATABLE = frozenset(
    {
        "subscriptionName",
        "description",
        "entities",
        "watchedAttributes",
        "notificationTrigger",
        "q",
        "geoQ",
        "notification",
        "expiresAt",
        "throttling",
        "isActive",
        "timeInterval",
        "scopeQ",
        "lang",
        "csf",
        "jsonldContext",
        "datasetId",
        "localOnly",
        "temporalQ",
    }
)

# receiverInfo pairs become HTTP headers of each notification (CIM 009 5.2.15).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # a token (RFC 9110 5.6.2)
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]{0,4096}")


def _check_entities(raw: object, ctx: Context) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise BadRequestData("entities must be a non-empty array of entity selectors")
    out = []
    for item in raw:
        if not isinstance(item, dict) or "type" not in item:
            raise BadRequestData("every entity selector needs a 'type' (5.2.33)")
        sel = {"type": ctx.expand(ent.check_name(item["type"], "entities[].type"))}
        if "id" in item:
            sel["id"] = ent.check_uri(item["id"], "entities[].id")
        if "idPattern" in item:
            pattern = item["idPattern"]
            try:
                compile_regex(pattern)  # RE2: linear-time matching, see query/regex.py
            except RegexError as exc:
                raise BadRequestData(
                    f"entities[].idPattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
            sel["idPattern"] = pattern
        out.append(sel)
    return out


def _check_attr_list(raw: object, what: str, ctx: Context) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise BadRequestData(f"{what} must be a non-empty array of attribute names")
    return [ctx.expand(ent.check_name(a, what)) for a in raw]


# notifierInfo keys of the MQTT binding and the values they take (CIM 009 5.2.15, ETSI 058).
NOTIFIER_INFO = {"MQTT-Version": ("mqtt3.1.1", "mqtt5.0"), "MQTT-QoS": ("0", "1", "2")}


def _check_notifier_info(raw: object) -> list[dict[str, str]]:
    """Endpoint notifierInfo: key/value pairs; the MQTT keys must have a known value."""
    if not isinstance(raw, list) or not all(isinstance(i, dict) and "key" in i for i in raw):
        raise BadRequestData("notification.endpoint.notifierInfo must be key/value pairs")
    out = []
    for item in raw:
        key, value = item.get("key"), item.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # an MQTT-QoS given as a number
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRequestData("notification.endpoint.notifierInfo must be key/value pairs")
        allowed = NOTIFIER_INFO.get(key)
        if allowed is not None and value not in allowed:
            raise BadRequestData(f"notifierInfo {key} must be one of {', '.join(allowed)}")
        out.append({"key": key, "value": value})
    return out


def projection_of(note: dict[str, Any], ctx: Context) -> Projection | None:
    """The pick/omit projection (4.21) of stored NotificationParams, None without one."""
    pick, omit = note.get("pick"), note.get("omit")
    level = note.get("joinLevel")
    return build_projection(
        ctx,
        pick=",".join(pick) if pick else None,
        omit=",".join(omit) if omit else None,
        attrs="attributes" if "attributes" in note and (pick or omit) else None,
        join=note.get("join") if note.get("join") != "@none" else None,
        join_level=None if level is None else str(level),
    )


def _check_notification(raw: object, ctx: Context, old: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequestData("notification must be an object (5.2.14)")
    out: dict[str, Any] = dict(old or {})
    if "attributes" in raw:
        out["attributes"] = _check_attr_list(raw["attributes"], "notification.attributes", ctx)
    fmt = raw.get("format", out.get("format", "normalized"))
    if fmt not in FORMATS:
        raise BadRequestData(f"notification.format must be one of {', '.join(FORMATS)}")
    out["format"] = fmt
    endpoint = raw.get("endpoint", out.get("endpoint"))
    if not isinstance(endpoint, dict) or "uri" not in endpoint:
        raise BadRequestData("notification.endpoint.uri is mandatory (5.2.15)")
    uri = endpoint["uri"]
    mqtt = isinstance(uri, str) and re.match(r"^mqtts?://", uri) is not None
    if mqtt:
        # MQTT binding: mqtt[s]://[user[:password]@]host[:port]/topic
        if not re.match(r"^mqtts?://[^\s/]+/\S+$", str(uri)) or "#" in uri or "+" in uri:
            raise BadRequestData(f"an MQTT endpoint needs a host and a topic name, got {uri!r}")
        if importlib.util.find_spec("aiomqtt") is None:
            raise OperationNotSupported("MQTT notification endpoints need aiomqtt installed")
    elif not isinstance(uri, str) or not re.match(r"^https?://[^\s/]+", uri):
        raise BadRequestData(
            f"notification.endpoint.uri must be an http(s) or mqtt(s) URL, got {uri!r}"
        )
    accept = endpoint.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise BadRequestData(f"notification.endpoint.accept must be one of {', '.join(ACCEPTS)}")
    out["endpoint"] = {"uri": uri, "accept": accept}
    if "receiverInfo" in endpoint:
        info = endpoint["receiverInfo"]
        if not isinstance(info, list) or not all(
            isinstance(i, dict)
            and isinstance(i.get("key"), str)
            and isinstance(i.get("value"), str)
            for i in info
        ):
            raise BadRequestData("notification.endpoint.receiverInfo must be key/value pairs")
        # Over HTTP the pairs are headers of each notification (5.2.15): a value such as 'é'
        # made every delivery fail with an exception.  Over MQTT they are JSON metadata.
        for i in () if mqtt else info:
            if not _HEADER_NAME.fullmatch(i["key"]) or not _HEADER_VALUE.fullmatch(i["value"]):
                raise BadRequestData(
                    f"notification.endpoint.receiverInfo {i['key'][:80]!r}: not an HTTP header "
                    "name and value (RFC 9110 5.1, 5.5: a token; visible ASCII, space, tab)"
                )
        out["endpoint"]["receiverInfo"] = info
    if "notifierInfo" in endpoint:
        out["endpoint"]["notifierInfo"] = _check_notifier_info(endpoint["notifierInfo"])
    for key in ("timeout", "cooldown"):  # 5.2.15: milliseconds
        if key in endpoint:
            ms = endpoint[key]
            if isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0:
                raise BadRequestData(f"notification.endpoint.{key} must be a positive number (ms)")
            out["endpoint"][key] = ms
    if "join" in raw or "joinLevel" in raw:  # 5.2.14, 4.5.23: Linked Entities in notifications
        join = raw.get("join", out.get("join"))
        level = raw.get("joinLevel", out.get("joinLevel"))
        if join is not None and not isinstance(join, str):
            raise BadRequestData("notification.join must be inline, flat or @none")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise BadRequestData("notification.joinLevel must be a positive integer")
        parse_join(join, None if level is None else str(level))
        if join is not None:
            out["join"] = join
        if level is not None:
            out["joinLevel"] = level
    for member in ("pick", "omit"):  # 5.2.14: projections (4.21) of the notified entities
        if member in raw:
            value = raw[member]
            if isinstance(value, str):
                value = [value]
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) for v in value)
            ):
                raise BadRequestData(f"notification.{member} must be a list of projections")
            out[member] = value
    projection_of(out, ctx)  # 400 now: pick with omit or attributes, bad grammar, join depth
    for flag in ("sysAttrs", "showChanges"):  # 5.2.14: both default to false
        if flag in raw:
            if not isinstance(raw[flag], bool):
                raise BadRequestData(f"notification.{flag} must be true or false")
            out[flag] = raw[flag]
    if out.get("showChanges") and out["format"] == "keyValues":
        raise BadRequestData("showChanges cannot be true with format keyValues (5.2.14)")
    # 5.2.14: status (ok / failed) tells how the last notification went, so it appears with
    # the first one; timesSent counts from 0.
    out.setdefault("timesSent", 0)
    return out


def _apply(doc: dict[str, Any], out: dict[str, Any], ctx: Context) -> None:
    """Validate the members of ``doc`` into ``out`` (create and update share this)."""
    if "timeInterval" in doc:
        interval = doc["timeInterval"]
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 1:
            raise BadRequestData("timeInterval must be a number of seconds, at least 1 (5.2.12)")
        out["timeInterval"] = interval
    if "entities" in doc:
        out["entities"] = _check_entities(doc["entities"], ctx)
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = _check_attr_list(
            doc["watchedAttributes"], "watchedAttributes", ctx
        )
    if "notificationTrigger" in doc:
        trig = doc["notificationTrigger"]
        if not isinstance(trig, list) or not trig or not set(trig) <= TRIGGERS:
            raise BadRequestData(f"notificationTrigger must be a list of {sorted(TRIGGERS)}")
        out["notificationTrigger"] = list(trig)
    for key in ("subscriptionName", "description", "q", "scopeQ", "lang"):  # 4.19, 4.15
        if key in doc:
            if not isinstance(doc[key], str):
                raise BadRequestData(f"{key} must be a string")
            out[key] = doc[key]
    if "lang" in out:
        parse_lang(out["lang"])  # 400 now for a bad language range, not at the first change
    if "temporalQ" in doc:
        raise OperationNotSupported("temporalQ on subscriptions is not supported (5.2.12)")
    if "localOnly" in doc:
        # 5.5.13: this broker does not forward subscriptions, so every one is local only
        if not isinstance(doc["localOnly"], bool):
            raise BadRequestData("localOnly must be true or false")
        out["localOnly"] = doc["localOnly"]
    if "datasetId" in doc:  # v1.8.1 5.2.12: the instances notified (4.5.5), @none the default
        ids = doc["datasetId"]
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise BadRequestData("datasetId must be a list of URIs or @none")
        parse_dataset_ids(",".join(ids))
        out["datasetId"] = ids
    if "jsonldContext" in doc:
        # 5.2.12: "the dereferenceable URI of the JSON-LD @context to be used when sending a
        # notification"; without it, the @context the subscription was made with
        out["jsonldContext"] = ent.check_uri(doc["jsonldContext"], "jsonldContext")
    if "csf" in doc:
        # 5.2.12: "a valid query string as per clause 4.9"; kept and returned (this broker
        # does not forward subscriptions to context sources, so it selects nothing here)
        csf = doc["csf"]
        try:
            if not isinstance(csf, str):
                raise BadRequestData("csf must be a string")
            parse_q(csf, ctx.expand)
        except PlatformError as exc:
            raise BadRequestData(f"csf is not a valid query (4.9): {exc.detail}") from None
        out["csf"] = csf
    if "geoQ" in doc:
        geo = doc["geoQ"]
        if not isinstance(geo, dict):
            raise BadRequestData("geoQ must be an object (5.2.13)")
        out["geoQ"] = geo
    if "notification" in doc:
        out["notification"] = _check_notification(doc["notification"], ctx, out.get("notification"))
    if "expiresAt" in doc:
        ent.parse_datetime(doc["expiresAt"], "expiresAt")
        if ent.utc_key(doc["expiresAt"]) <= ent.utc_key(ent.now_iso()):
            raise BadRequestData("expiresAt must be in the future (5.2.12)")
        out["expiresAt"] = doc["expiresAt"]
    if "throttling" in doc:
        thr = doc["throttling"]
        if isinstance(thr, bool) or not isinstance(thr, int | float) or thr <= 0:
            raise BadRequestData("throttling must be a positive number of seconds")
        out["throttling"] = thr
    if "isActive" in doc:
        if not isinstance(doc["isActive"], bool):
            raise BadRequestData("isActive must be true or false")
        out["isActive"] = doc["isActive"]
    if "entities" not in out and "watchedAttributes" not in out:
        raise BadRequestData("a subscription needs entities or watchedAttributes (5.2.12)")
    if "timeInterval" in out:
        # 5.2.12: a periodic subscription notifies on time, not on changes, so it has no
        # watchedAttributes; throttling is refused with it as well (it would mean nothing).
        for other in ("watchedAttributes", "throttling"):
            if other in out:
                raise BadRequestData(f"timeInterval cannot be combined with {other} (5.2.12)")
        if "entities" not in out:
            raise BadRequestData("a periodic subscription (timeInterval) needs entities")
    if "notification" not in out:
        raise BadRequestData("a subscription needs a notification member (5.2.12)")
    search_for(out, ctx)  # q and geoQ errors are 400 now, not at the first change


def search_for(stored: dict[str, Any], ctx: Context) -> EntitySearch | None:
    """The q / geoQ / scopeQ filter of a subscription (None when it has none)."""
    geo = stored.get("geoQ") or {}
    if "q" not in stored and not geo and "scopeQ" not in stored:
        return None
    coords = geo.get("coordinates")
    return EntitySearch.build(
        ctx,
        q=stored.get("q"),
        georel=geo.get("georel"),
        geometry=geo.get("geometry"),
        coordinates=coords if coords is None or isinstance(coords, str | list) else str(coords),
        geoproperty=geo.get("geoproperty"),
        scope_q=stored.get("scopeQ"),
    )


def new_subscription(doc: object, ctx: Context, *, context_source: Any, now: str) -> dict[str, Any]:
    """Create Subscription (5.8.1): the stored form of a valid request body."""
    if not isinstance(doc, dict):
        raise BadRequestData("a subscription must be a JSON object")
    if doc.get("type") != "Subscription":
        raise BadRequestData("a subscription's type must be 'Subscription'")
    sub_id = doc.get("id") or f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    out: dict[str, Any] = {
        "id": ent.check_uri(sub_id, "subscription id"),
        "type": "Subscription",
        "isActive": True,
        "notificationTrigger": list(DEFAULT_TRIGGERS),
        "jsonldContext": context_source,
        "createdAt": now,
        "modifiedAt": now,
    }
    _apply(doc, out, ctx)
    return out


def update_subscription(
    stored: dict[str, Any], fragment: object, ctx: Context, *, now: str
) -> dict[str, Any]:
    """Update Subscription (5.8.2): merge a fragment into the stored form."""
    if not isinstance(fragment, dict) or not fragment:
        raise BadRequestData("the body must be a non-empty subscription fragment")
    unknown = set(fragment) - UPDATABLE - {"id", "type", "@context"}
    if unknown:
        raise BadRequestData(f"unknown subscription members: {', '.join(sorted(unknown))}")
    if fragment.get("id", stored["id"]) != stored["id"]:
        raise BadRequestData("the id of a subscription cannot change")
    if "type" in fragment and fragment["type"] != "Subscription":
        raise BadRequestData(
            "a subscription fragment's type, if given, is 'Subscription' (ETSI 039_04)"
        )
    out = dict(stored)
    _apply(fragment, out, ctx)
    out["modifiedAt"] = now
    return out


def status_of(stored: dict[str, Any], now: str) -> str:
    """active / paused / expired (5.2.12); an expired subscription stays expired when it is
    paused (5.8.2.4: paused "if and only if the previous value of status was different than
    expired", ETSI 029_09)."""
    expires = stored.get("expiresAt")
    if expires and ent.utc_key(expires) <= ent.utc_key(now):
        return "expired"
    if not stored.get("isActive", True):
        return "paused"
    return "active"


def render_subscription(
    stored: dict[str, Any], ctx: Context, *, now: str, sys_attrs: bool = False
) -> dict[str, Any]:
    """The subscription as a client sees it, compacted with ``ctx``."""
    out: dict[str, Any] = {"id": stored["id"], "type": "Subscription"}
    for key in ("subscriptionName", "description"):
        if key in stored:
            out[key] = stored[key]
    if "entities" in stored:
        out["entities"] = [{**s, "type": ctx.compact(s["type"])} for s in stored["entities"]]
    if "watchedAttributes" in stored:
        out["watchedAttributes"] = [ctx.compact(a) for a in stored["watchedAttributes"]]
    for key in (
        "notificationTrigger",
        "q",
        "geoQ",
        "scopeQ",
        "lang",
        "csf",
        "datasetId",
        "localOnly",
        "expiresAt",
        "throttling",
        "timeInterval",
        "isActive",
    ):
        if key in stored:
            out[key] = stored[key]
    note = dict(stored["notification"])
    if "attributes" in note:
        note["attributes"] = [ctx.compact(a) for a in note["attributes"]]
    out["notification"] = note
    out["status"] = status_of(stored, now)
    if isinstance(stored.get("jsonldContext"), str):
        out["jsonldContext"] = stored["jsonldContext"]
    if sys_attrs:
        out["createdAt"] = stored["createdAt"]
        out["modifiedAt"] = stored["modifiedAt"]
    return out
