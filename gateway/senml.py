"""The gateway's own SenML decoder (RFC 8428), JSON and CBOR, with record resolution.

Devices carry their own SenML encoder on purpose (DESIGN 2): the two are tested against each
other and against the RFC's examples.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, NamedTuple

import cbor2
import orjson

from gateway.errors import RejectedPayload

# RFC 8428 Table 4: CBOR labels.
CBOR_LABELS = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
VALUE_FIELDS = ("v", "vs", "vb", "vd")
KNOWN = frozenset({*CBOR_LABELS.values()})
# Section 4.5.1: names start with a letter or digit, then letters, digits, ':', '.', '/', '_', '-'.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:./_-]*$")
# Our bound (the RFC sets none): longer names are malformed.  Checked before valid_name, whose
# cache would otherwise keep 65536 names of up to 64 KB each that a sender invents (4 GB).
MAX_NAME = 255
RELATIVE_LIMIT = 2**28  # section 4.5.3: smaller resolved times are relative to "now"
BASE_FIELDS = frozenset({"bver", "bn", "bt", "bu", "bv", "bs"})
# The times a reading may carry once resolved (section 4.5.3 leaves the range open): from the
# Unix epoch (earlier is a clock that was never set) to the end of year 9999, which
# ISO 8601's four-digit year (the platform's observedAt) can still write.  Outside it the
# datetime conversion overflowed (1e300, -1e20: a traceback instead of a rejected reading).
EARLIEST = 0.0
LATEST = 253_402_300_799.999  # 9999-12-31T23:59:59.999Z, the last millisecond iso() writes


def valid_time(t: float) -> bool:
    """Whether a resolved time is in [EARLIEST, LATEST] (False for NaN too)."""
    return EARLIEST <= t <= LATEST


def check_time(t: float, what: str) -> float:
    """``t`` if :func:`valid_time`, else a rejected reading (invalid-value: CoAP 4.00, 0x99)."""
    if EARLIEST <= t <= LATEST:
        return t
    raise RejectedPayload("invalid-value", f"{what} {t!r} is outside 1970-01-01 to 9999-12-31")


class Record(NamedTuple):
    """A resolved SenML record (section 4.6)."""

    name: str
    time: float  # seconds since the Unix epoch
    unit: str | None
    value: float | str | bool | bytes | None
    sum: float | None = None


def _number(value: object, label: str) -> float:
    if type(value) is float:  # the usual case first (cbor2 and orjson give plain floats)
        if math.isfinite(value):
            return value
        raise RejectedPayload("invalid-value", f"SenML {label} is not finite: {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RejectedPayload("malformed", f"SenML {label} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any double
        raise RejectedPayload("invalid-value", f"SenML {label} is out of range") from None
    if not math.isfinite(number):
        raise RejectedPayload("invalid-value", f"SenML {label} is not finite: {value!r}")
    return number


def _text(value: object, label: str) -> str:
    if not isinstance(value, str):
        raise RejectedPayload("malformed", f"SenML {label} must be a string")
    return value


@functools.lru_cache(maxsize=65536)
def valid_name(name: str) -> bool:
    """Section 4.5.1, remembered per name: a fleet sends the same few names over and over."""
    return _NAME.match(name) is not None


def decode_json(payload: bytes) -> list[dict[str, Any]]:
    try:
        pack = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RejectedPayload("malformed", f"not JSON: {exc}") from None
    if not isinstance(pack, list):
        raise RejectedPayload("malformed", "a SenML pack is a JSON array of records")
    return pack


def decode_cbor(payload: bytes) -> list[dict[str, Any]]:
    try:
        pack = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise RejectedPayload("malformed", f"not CBOR: {exc}") from None
    if not isinstance(pack, list):
        raise RejectedPayload("malformed", "a SenML pack is a CBOR array of maps")
    labels = CBOR_LABELS
    records = []
    for raw in pack:
        if not isinstance(raw, dict):
            raise RejectedPayload("malformed", "every SenML record is a CBOR map")
        try:
            records.append({labels[key]: value for key, value in raw.items()})
        except (KeyError, TypeError):  # TypeError: a key that cannot be hashed
            unknown = next(key for key in raw if not _is_label(key))
            raise RejectedPayload("malformed", f"unknown SenML CBOR label {unknown!r}") from None
    return records


def _is_label(key: object) -> bool:
    try:
        return key in CBOR_LABELS
    except TypeError:
        return False


def resolve(pack: list[dict[str, Any]], *, now: float) -> list[Record]:
    """Resolve base values into self-contained records (section 4.6)."""
    bn, bt, bu, bv, bs = "", 0.0, None, 0.0, 0.0
    out: list[Record] = []
    for raw in pack:
        if not isinstance(raw, dict):
            raise RejectedPayload("malformed", "every SenML record is an object")
        if not KNOWN.issuperset(raw):
            unknown = [k for k in raw if k not in KNOWN and not str(k).endswith("_")]
            if unknown:
                raise RejectedPayload("malformed", f"unknown SenML fields {unknown}")
            # Section 4.4: fields ending in '_' must be understood; we understand none.
            raise RejectedPayload("malformed", "SenML must-understand fields are not supported")
        if not BASE_FIELDS.isdisjoint(raw):
            if "bver" in raw and raw["bver"] != 10:
                _number(raw["bver"], "bver")
            if "bn" in raw:
                bn = _text(raw["bn"], "bn")
            if "bt" in raw:
                bt = _number(raw["bt"], "bt")
            if "bu" in raw:
                bu = _text(raw["bu"], "bu")
            if "bv" in raw:
                bv = _number(raw["bv"], "bv")
            if "bs" in raw:
                bs = _number(raw["bs"], "bs")
        has_value = ("v" in raw) + ("vs" in raw) + ("vb" in raw) + ("vd" in raw)
        if has_value > 1:
            present = [f for f in VALUE_FIELDS if f in raw]
            raise RejectedPayload("malformed", f"a SenML record has one value field, not {present}")
        if not has_value and "s" not in raw:
            if "n" in raw:
                raise RejectedPayload("malformed", f"SenML record {raw['n']!r} has no value")
            continue  # a record that only sets base fields
        n = raw.get("n", "")
        if not isinstance(n, str):
            raise RejectedPayload("malformed", f"SenML n must be a string, got {n!r}")
        name = bn + n
        if len(name) > MAX_NAME or not valid_name(name):
            raise RejectedPayload("malformed", f"invalid SenML name {name!r} (section 4.5.1)")
        t = bt + _number(raw["t"], "t") if "t" in raw else bt
        if t < RELATIVE_LIMIT:
            t = now + t
        if not EARLIEST <= t <= LATEST:
            check_time(t, f"SenML time (bt + t, RFC 8428 4.5.3) of {name!r}")
        unit = raw.get("u", bu)
        if unit is not None and not isinstance(unit, str):
            raise RejectedPayload("malformed", "SenML u must be a string")
        value: float | str | bool | bytes | None = None
        if "v" in raw:
            value = bv + _number(raw["v"], "v")
        elif "vs" in raw:
            value = _text(raw["vs"], "vs")
        elif "vb" in raw:
            if not isinstance(raw["vb"], bool):
                raise RejectedPayload("malformed", "SenML vb must be a boolean")
            value = raw["vb"]
        elif "vd" in raw:
            value = raw["vd"]
        total = bs + _number(raw["s"], "s") if "s" in raw else None
        out.append(Record(name, t, unit, value, total))
    if not out:
        raise RejectedPayload("malformed", "the SenML pack holds no readings")
    return out
