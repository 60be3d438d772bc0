"""The pure normalizer: one inbound payload -> the NGSI-LD entity updates it stands for.

No I/O and no clock: the time a payload was received comes with it (relative SenML times are
resolved against it, RFC 8428 section 4.5.3).  Every payload either yields entity updates or
raises :class:`RejectedPayload` with a reason; nothing in between.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Literal, NamedTuple

import cbor2
import orjson

from city_platform.models import (
    EntityFragment,
    GeoProperty,
    Property,
    Relationship,
    entity_id,
)
from gateway import senml
from gateway.errors import RejectedPayload
from gateway.profiles import Measurement, Profile, Profiles, device_from_base_name
from gateway.vendor import decode_vendor_csv, decode_vendor_json

Format = Literal["senml-json", "senml-cbor", "vendor-json", "vendor-csv"]
Protocol = Literal["mqtt", "coap"]
FORMATS: tuple[Format, ...] = ("senml-json", "senml-cbor", "vendor-json", "vendor-csv")
MEDIA_TYPES: dict[str, Format] = {
    "application/senml+json": "senml-json",
    "application/senml+cbor": "senml-cbor",
    "application/vnd.r197.vendor+json": "vendor-json",
    "application/json": "vendor-json",
    "text/csv": "vendor-csv",
    "text/plain": "vendor-csv",
}
# CoAP Content-Formats (RFC 7252 section 12.3, RFC 8428 section 12.3).
COAP_FORMATS: dict[int, Format] = {
    110: "senml-json",
    112: "senml-cbor",
    50: "vendor-json",
    0: "vendor-csv",
}
MAX_PAYLOAD = 64 * 1024
# A device id as a transport gives it (CoAP /up/<id>, the MQTT topic level, the directory's
# ep): bounded in length and charset before it names anything (a metric label, a log line, an
# entity id).  Wider than the profiles' <kind>-<n>: a well-formed id of no kind is 4.04.
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}")
_KEPT = 65536  # entries of each lru_cache below: names, devices, their documents' parts
_DIGITS = 6


class Inbound(NamedTuple):
    """A payload as a transport received it (a named tuple: one is built per message)."""

    protocol: Protocol
    payload: bytes
    format: Format
    received_at: float  # seconds since the Unix epoch
    device_id: str | None = None  # from the topic, path or directory; None: from the payload
    source: str | None = None  # the sender's IP address


class Normalized(NamedTuple):
    device_id: str
    kind: str
    readings: int  # measurements turned into attribute updates
    entities: list[EntityFragment]
    observed_at: float  # the newest reading's time


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text
_MILLIS = [f".{n:03d}Z" for n in range(1000)]  # formatting the milliseconds was a third of iso


def iso(t: float) -> str:
    """UTC ISO 8601 with milliseconds and 'Z' (the platform's observedAt form).

    Readings arrive in time order, so the date and time of day are formatted once per second
    and only the milliseconds per reading (the hot path formats one or two stamps per reading).
    """
    # As datetime.fromtimestamp: split exactly, round the microseconds half to even.
    fraction_s, whole = math.modf(t)
    second, fraction = int(whole), round(fraction_s * 1_000_000)
    if fraction >= 1_000_000:
        second, fraction = second + 1, fraction - 1_000_000
    elif fraction < 0:
        second, fraction = second - 1, fraction + 1_000_000
    if _second[0] != second:
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0], _second[1] = second, stamp
    text: str = _second[1]
    return text + _MILLIS[fraction // 1000]


def format_for_media_type(media_type: str | None) -> Format | None:
    if not media_type:
        return None
    exact = MEDIA_TYPES.get(media_type)  # the usual case, without parameters
    if exact is not None:
        return exact
    return MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())


def _in_range(m: Measurement, value: float) -> bool:
    return not (
        (m.minimum is not None and value < m.minimum)
        or (m.maximum is not None and value > m.maximum)
    )


def _convert(m: Measurement, value: object, factor: float, offset: float) -> float | str:
    if m.is_text:
        if not isinstance(value, str) or value not in m.values:
            raise RejectedPayload(
                "invalid-value", f"{m.senml}: {value!r} is not one of {list(m.values)}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedPayload("invalid-value", f"{m.senml}: expected a number, got {value!r}")
    converted = round(value * factor + offset, _DIGITS)
    if not _in_range(m, converted):
        raise RejectedPayload(
            "invalid-value",
            f"{m.attribute}={converted} {m.unit_code or ''} outside [{m.minimum}, {m.maximum}]",
        )
    return converted


class _Builder:
    """Collects converted readings per observation time, then renders entities."""

    def __init__(self, device_id: str, profile: Profile) -> None:
        self.device_id = device_id
        self.profile = profile
        self.by_time: dict[float, dict[str, tuple[float | str, Measurement]]] = {}
        self.location: dict[float, dict[str, float]] = {}
        self.readings = 0

    def add(self, t: float, m: Measurement, value: float | str) -> None:
        attrs = self.by_time.get(t)
        if attrs is None:
            attrs = self.by_time[t] = {}
        attrs[m.attribute] = (value, m)
        self.readings += 1

    def add_position(self, t: float, axis: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RejectedPayload("invalid-value", f"{axis} must be a number")
        limit = 90 if axis == "lat" else 180
        if not -limit <= value <= limit:
            raise RejectedPayload("invalid-value", f"{axis}={value} out of range")
        self.location.setdefault(t, {})[axis] = float(value)

    def build(self, inbound: Inbound) -> Normalized:
        by_time = self.by_time
        if not by_time:
            raise RejectedPayload("malformed", "no readings in the payload")
        profile = self.profile
        entity_type = profile.entity_type
        doc_id, device_ref, ref_device = _names_of(entity_type, self.device_id)
        entities: list[EntityFragment] = []
        times = sorted(by_time) if len(by_time) > 1 else list(by_time)
        when = ""
        for t in times:
            when = iso(t)
            doc: EntityFragment = {"id": doc_id, "type": entity_type}
            for attr, (value, m) in by_time[t].items():
                doc[attr] = _reading(value, when, m.unit_code)
            pos = self.location.get(t) if self.location else None
            if pos and "lat" in pos and "lon" in pos:
                location: GeoProperty = {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [pos["lon"], pos["lat"]]},
                    "observedAt": when,
                }
                doc["location"] = location
            doc["refDevice"] = ref_device
            entities.append(doc)
        newest = times[-1]
        if len(times) == 1:
            controlled = tuple(sorted(by_time[newest]))
        else:
            controlled = tuple(sorted({a for attrs in by_time.values() for a in attrs}))
        entities.append(_device(device_ref, profile, inbound, controlled, when))  # newest time
        return Normalized(self.device_id, profile.kind, self.readings, entities, newest)


# The parts of the documents that a device repeats with every reading, made once: the ids, the
# refDevice relationship and the Device entity's list-valued properties.  Shared between the
# documents of successive readings, which nobody changes once normalized (thinning.py relies
# on it too), and cheap to compare when they are the same objects.
def _reading(value: float | str, when: str, unit_code: str | None) -> Property:
    if unit_code:
        return {"type": "Property", "value": value, "observedAt": when, "unitCode": unit_code}
    return {"type": "Property", "value": value, "observedAt": when}


def _device(
    device_ref: str, profile: Profile, inbound: Inbound, controlled: tuple[str, ...], when: str
) -> EntityFragment:
    """The Device entity of a reading observed at ``when``."""
    device: EntityFragment = {
        "id": device_ref,
        "type": "Device",
        "deviceCategory": _property(profile.kind),
        "supportedProtocol": _property(inbound.protocol),
        "controlledProperty": _property(controlled),
        "dateLastValueReported": {"type": "Property", "value": when},
    }
    if inbound.source:
        device["ipAddress"] = _property(inbound.source)
    return device


@functools.lru_cache(maxsize=_KEPT)
def _names_of(entity_type: str, device_id: str) -> tuple[str, str, Relationship]:
    """A device's entity id, Device id and refDevice relationship."""
    device_ref = entity_id("Device", device_id)
    ref_device: Relationship = {"type": "Relationship", "object": device_ref}
    return entity_id(entity_type, device_id), device_ref, ref_device


@functools.lru_cache(maxsize=_KEPT)
def _property(value: str | tuple[str, ...]) -> Property:
    """``{"type": "Property", "value": [...]}`` of one string or of a tuple of strings."""
    return {"type": "Property", "value": [value] if isinstance(value, str) else list(value)}


@functools.lru_cache(maxsize=_KEPT)
def _device_id_ok(device_id: str) -> bool:
    """:data:`DEVICE_ID`, remembered per id (checked once per device, not per reading)."""
    return DEVICE_ID.fullmatch(device_id) is not None


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is a :data:`DEVICE_ID`, else invalid-device-id (CoAP 4.00, 0x90)."""
    if len(device_id) <= 80 and _device_id_ok(device_id):  # long ones are not remembered
        return device_id
    shown = device_id[:40] + ("..." if len(device_id) > 40 else "")
    raise RejectedPayload(
        "invalid-device-id", f"{shown!r}: 1 to 80 of A-Z a-z 0-9 _ . : - (a letter or digit first)"
    )


def _check_device(claimed: str | None, inbound: Inbound) -> str:
    if inbound.device_id and claimed and claimed != inbound.device_id:
        raise RejectedPayload(
            "mismatched-device",
            f"payload names device {claimed[:80]!r} but arrived as {inbound.device_id!r}",
        )
    if inbound.device_id:
        return inbound.device_id  # checked by normalize
    if not claimed:
        raise RejectedPayload("unknown-device", "no device id in the topic, path or payload")
    return check_device_id(claimed)


@functools.lru_cache(maxsize=_KEPT)
def _name_parts(name: str) -> tuple[str | None, str]:
    """The device a SenML name belongs to (None: not said) and the measurement it names.

    Remembered per name (a fleet sends the same names over and over); names that are not
    ours raise each time (lru_cache keeps no exceptions)."""
    prefix, _, measurement = name.rpartition(":")
    if not prefix:
        return None, measurement
    owner = device_from_base_name(prefix + ":")
    if owner is None:
        raise RejectedPayload("malformed", f"SenML name {name!r} is not ours")
    return owner, measurement


def _normalize_senml(inbound: Inbound, profiles: Profiles) -> Normalized:
    decode = senml.decode_json if inbound.format == "senml-json" else senml.decode_cbor
    records = senml.resolve(decode(inbound.payload), now=inbound.received_at)
    claimed: str | None = None
    parsed: list[tuple[str, senml.Record]] = []
    for record in records:
        owner, measurement = _name_parts(record.name)
        if owner is not None:
            if claimed is not None and owner != claimed:
                raise RejectedPayload("mismatched-device", "one pack names several devices")
            claimed = owner
        parsed.append((measurement, record))
    device_id = _check_device(claimed, inbound)
    profile = profiles.for_device(device_id)
    out = _Builder(device_id, profile)
    for name, record in parsed:
        value = record.value if record.value is not None else record.sum
        if name in ("lat", "lon"):
            out.add_position(record.time, name, value)
            continue
        m = profile.by_senml(name)
        if m is None:
            raise RejectedPayload("unknown-measurement", f"{profile.kind} has no {name!r}")
        if m.unit is not None and record.unit is not None and record.unit != m.unit:
            raise RejectedPayload(
                "wrong-unit", f"{name} in {record.unit!r}; the profile expects {m.unit!r}"
            )
        out.add(record.time, m, _convert(m, value, m.factor, m.offset))
    return out.build(inbound)


def _normalize_vendor(inbound: Inbound, profiles: Profiles) -> Normalized:
    csv = inbound.format == "vendor-csv"
    reading = decode_vendor_csv(inbound.payload) if csv else decode_vendor_json(inbound.payload)
    device_id = _check_device(reading.device_id, inbound)
    profile = profiles.for_device(device_id)
    out = _Builder(device_id, profile)
    for name, value in reading.fields.items():
        m = profile.by_senml(name) if csv else profile.by_vendor(name)
        if m is None:
            raise RejectedPayload("unknown-measurement", f"{profile.kind} has no field {name!r}")
        if csv:
            out.add(reading.time, m, _convert(m, value, m.factor, m.offset))
        else:
            out.add(reading.time, m, _convert(m, value, m.vendor_factor, m.vendor_offset))
    if reading.lat is not None and reading.lon is not None:
        out.add_position(reading.time, "lat", reading.lat)
        out.add_position(reading.time, "lon", reading.lon)
    return out.build(inbound)


# The one-record pack of the testbed's devices (and of most SenML firmware): base name, base
# time, name, unit, value.  CBOR labels (RFC 8428 Table 4) and JSON names.
_ONE_CBOR = frozenset({-2, -3, 0, 1, 2}), itemgetter(-2, -3, 0, 1, 2)  # bn, bt, n, u, v
_ONE_JSON = frozenset({"bn", "bt", "n", "u", "v"}), itemgetter("bn", "bt", "n", "u", "v")
_EARLIEST, _LATEST, _MAX_NAME = senml.EARLIEST, senml.LATEST, senml.MAX_NAME


def _plain_number(x: object) -> float | None:
    """A finite float or int as senml._number gives it; None for anything else (bools too)."""
    if type(x) is float:
        return x if math.isfinite(x) else None
    if type(x) is int and -(2**53) <= x <= 2**53:  # exact as a double: no overflow, no rounding
        return float(x)
    return None


def _one_record(inbound: Inbound, profiles: Profiles) -> Normalized | None:
    """The usual reading, normalized in a few steps; None for any other pack or for anything
    to reject, which the general path (:func:`_normalize_senml`) then handles and explains.

    Gives what the general path gives (tests/gateway/test_normalizer.py compares the two on
    generated packs): the general path's checks, in its order, for this one shape."""
    cbor = inbound.format == "senml-cbor"
    try:
        pack = cbor2.loads(inbound.payload) if cbor else orjson.loads(inbound.payload)
    except (ValueError, TypeError, EOFError, cbor2.CBORDecodeError):  # orjson's is a ValueError
        return None
    if type(pack) is not list or len(pack) != 1 or type(pack[0]) is not dict:
        return None
    raw = pack[0]
    labels, fields = _ONE_CBOR if cbor else _ONE_JSON
    if raw.keys() != labels:
        return None
    bn, bt, n, unit, v = fields(raw)
    if type(bn) is not str or type(n) is not str or type(unit) is not str:
        return None
    bt, v = _plain_number(bt), _plain_number(v)
    if bt is None or v is None:
        return None
    name = bn + n
    if len(name) > _MAX_NAME or not senml.valid_name(name):
        return None
    t = bt + inbound.received_at if bt < senml.RELATIVE_LIMIT else bt
    if not _EARLIEST <= t <= _LATEST:  # senml.valid_time, inline on the hot path
        return None  # the general path rejects it with its reason
    owner, measurement = _name_parts(name)  # raises as the general path would
    if owner is None or (inbound.device_id and owner != inbound.device_id):
        return None  # no device in the name, or a mismatch
    if measurement in ("lat", "lon"):
        return None  # a position, not a measurement
    profile = profiles.for_device(owner)
    m = profile.by_senml(measurement)
    if m is None or m.is_text or (m.unit is not None and unit != m.unit):
        return None
    value = round((0.0 + v) * m.factor + m.offset, _DIGITS)  # as _convert, on bv (0) + v
    if not _in_range(m, value):
        return None
    when = iso(t)
    entity_type = profile.entity_type
    doc_id, device_ref, ref_device = _names_of(entity_type, owner)
    prop = _reading(value, when, m.unit_code)
    doc = {"id": doc_id, "type": entity_type, m.attribute: prop, "refDevice": ref_device}
    device = _device(device_ref, profile, inbound, (m.attribute,), when)
    return Normalized(owner, profile.kind, 1, [doc, device], t)


def normalize(inbound: Inbound, profiles: Profiles) -> Normalized:
    """Decode, validate, convert and map one payload (raises :class:`RejectedPayload`)."""
    device = inbound.device_id
    if device is not None and (len(device) > 80 or not _device_id_ok(device)):
        check_device_id(device)  # raises, with the reason
    if len(inbound.payload) > MAX_PAYLOAD:
        raise RejectedPayload(
            "oversized", f"{len(inbound.payload)} bytes; the limit is {MAX_PAYLOAD}"
        )
    if inbound.format in ("senml-json", "senml-cbor"):
        return _one_record(inbound, profiles) or _normalize_senml(inbound, profiles)
    if inbound.format in ("vendor-json", "vendor-csv"):
        return _normalize_vendor(inbound, profiles)
    raise RejectedPayload("unsupported-format", f"unknown format {inbound.format!r}")
