"""Legacy vendor formats (docs/wire-formats.md): a flat JSON object and a CSV line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from gateway.errors import RejectedPayload
from gateway.senml import check_time


@dataclass(frozen=True)
class VendorReading:
    device_id: str | None
    time: float  # seconds since the Unix epoch
    fields: dict[str, float | str] = field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None


def _finite(value: object, name: str) -> float | str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedPayload("malformed", f"field {name!r}: not a number or string: {value!r}")
    if not math.isfinite(value):
        raise RejectedPayload("invalid-value", f"field {name!r} is not finite")
    return float(value)


def decode_vendor_json(payload: bytes) -> VendorReading:
    """``{"dev": ..., "time": "<ISO 8601 with offset>", <field>: <value>, ...}``."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RejectedPayload("malformed", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RejectedPayload("malformed", "vendor-json is one JSON object")
    dev = doc.pop("dev", None)
    if dev is not None and not isinstance(dev, str):
        raise RejectedPayload("malformed", "'dev' must be a string")
    when = doc.pop("time", None)
    if not isinstance(when, str):
        raise RejectedPayload("malformed", "'time' (ISO 8601 with UTC offset) is missing")
    try:
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise RejectedPayload("malformed", f"'time' is not ISO 8601: {when!r}") from None
    if parsed.tzinfo is None:
        raise RejectedPayload("malformed", f"'time' has no UTC offset: {when!r}")
    lat, lon = doc.pop("lat", None), doc.pop("lon", None)
    fields = {str(k): _finite(v, str(k)) for k, v in doc.items()}
    return VendorReading(
        device_id=dev,
        # An offset can push a local 9999-12-31 past the UTC year 9999: the range is checked.
        time=check_time(parsed.timestamp(), "vendor-json time"),
        fields=fields,
        lat=float(_finite(lat, "lat")) if isinstance(lat, int | float) else None,
        lon=float(_finite(lon, "lon")) if isinstance(lon, int | float) else None,
    )


def decode_vendor_csv(payload: bytes) -> VendorReading:
    """``<device id>,<epoch seconds>,<name>=<value>[,...]`` with SenML names and units."""
    try:
        line = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RejectedPayload("malformed", "vendor-csv must be ASCII text") from None
    parts = line.split(",")
    if len(parts) < 3 or "\n" in line:
        raise RejectedPayload("malformed", "vendor-csv is one line: id,epoch,name=value,...")
    try:
        when = float(parts[1])
    except ValueError:
        raise RejectedPayload(
            "malformed", f"vendor-csv time {parts[1]!r} is not a number"
        ) from None
    if not math.isfinite(when):
        raise RejectedPayload("malformed", "vendor-csv time is not finite")
    check_time(when, "vendor-csv time")
    fields: dict[str, float | str] = {}
    for item in parts[2:]:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise RejectedPayload("malformed", f"vendor-csv field {item!r} is not name=value")
        try:
            number = float(raw)
        except ValueError:
            fields[name] = raw
            continue
        fields[name] = _finite(number, name)
    lat, lon = fields.pop("lat", None), fields.pop("lon", None)
    return VendorReading(
        device_id=parts[0] or None,
        time=when,
        fields=fields,
        lat=lat if isinstance(lat, float) else None,
        lon=lon if isinstance(lon, float) else None,
    )
