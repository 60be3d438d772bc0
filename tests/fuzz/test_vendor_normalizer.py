"""The vendor formats (flat JSON, CSV line) and normalize() end to end over every format: only
RejectedPayload comes out, and what comes out is what the platform can store."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import cbor2
import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from devices import vendor as device_vendor
from gateway.errors import RejectedPayload
from gateway.normalizer import FORMATS, Inbound, Normalized, normalize
from gateway.profiles import Profiles
from gateway.senml import LATEST
from gateway.vendor import decode_vendor_csv, decode_vendor_json
from tests.fuzz.strategies import (
    DEVICES,
    KIND_SENML,
    KIND_VENDOR,
    NUMBERS,
    SCALARS,
    SENML_PACKS,
    json_values,
    mostly,
    plausible_packs,
)

PROFILES = Profiles()
VENDOR_FIELDS = sorted(
    {m.vendor_field for kind in PROFILES.kinds() for m in PROFILES.get(kind).measurements}  # type: ignore[union-attr]
    - {None}
)
SENML_FIELDS = sorted(
    {m.senml for kind in PROFILES.kinds() for m in PROFILES.get(kind).measurements}  # type: ignore[union-attr]
)
ISO_TIMES = mostly(
    st.datetimes(min_value=datetime(1971, 1, 1), timezones=st.timezones()).map(
        lambda d: d.isoformat()
    ),
    st.one_of(
        st.sampled_from(
            [
                "2026-01-01T00:00:00Z",
                "9999-12-31T23:59:59-14:00",  # past the year 9999 in UTC
                "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
                "1969-12-31T23:59:59Z",
                "2026-13-01T00:00:00Z",
                "2026-01-01T00:00:00",  # no offset
                "2026-01-01T00:00:00+24:00",
            ]
        ),
        st.text(max_size=30),
    ),
)


@st.composite
def vendor_json_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    device = draw(st.sampled_from(DEVICES))
    if draw(st.integers(0, 5)):
        doc["dev"] = draw(mostly(st.just(device), SCALARS))
    if draw(st.integers(0, 9)):
        doc["time"] = draw(mostly(ISO_TIMES, SCALARS))
    own = KIND_VENDOR.get(device.split("-")[0], VENDOR_FIELDS)
    names = mostly(st.sampled_from(own), st.sampled_from([*VENDOR_FIELDS, "lat", "lon", "x"]))
    for name in draw(st.lists(names, max_size=4)):
        doc[name] = draw(mostly(st.floats(0, 100), st.one_of(NUMBERS, json_values(leaves=3))))
    return doc


def _json(value: Any) -> bytes:
    return json.dumps(value, default=lambda b: b.hex()).encode()


CSV_VALUES = mostly(
    st.floats(0, 100).map(str),
    st.one_of(
        st.floats().map(repr),
        st.integers().map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "1_000", " 1 ", "0x10", "", "free", "="]),
        st.text(alphabet=st.characters(max_codepoint=127), max_size=8),
    ),
)


@st.composite
def vendor_csv_lines(draw: st.DrawFn) -> bytes:
    device = draw(st.sampled_from(DEVICES))
    own = KIND_SENML.get(device.split("-")[0], SENML_FIELDS)
    parts = [
        draw(mostly(st.just(device), st.text(max_size=8))),
        draw(mostly(st.integers(0, 4 * 10**9).map(str), CSV_VALUES)),
    ]
    for _ in range(draw(st.integers(0, 4))):
        name = draw(mostly(st.sampled_from(own), st.sampled_from([*SENML_FIELDS, "lat", "lon"])))
        parts.append(f"{name}={draw(CSV_VALUES)}" if draw(st.integers(0, 9)) else name)
    line = ",".join(parts)
    return line.encode("utf-8") if draw(st.integers(0, 19)) else line.encode("utf-16")


@given(doc=st.one_of(vendor_json_docs(), json_values()))
@example(doc={"dev": "weather-1", "time": "2026-01-01T00:00:00Z", "tempF": 10**400})
def test_vendor_json_decodes_or_rejects(doc: Any) -> None:
    try:
        reading = decode_vendor_json(_json(doc))
    except RejectedPayload:
        return
    assert all(math.isfinite(v) for v in reading.fields.values() if isinstance(v, float))


@given(line=st.one_of(vendor_csv_lines(), st.binary(max_size=40)))
def test_vendor_csv_decodes_or_rejects(line: bytes) -> None:
    try:
        reading = decode_vendor_csv(line)
    except RejectedPayload:
        return
    assert all(math.isfinite(v) for v in reading.fields.values() if isinstance(v, float))


@given(
    device=st.sampled_from(DEVICES),
    time=st.integers(0, int(LATEST)),
    values=st.dictionaries(
        st.sampled_from(SENML_FIELDS),
        st.tuples(st.floats(-1e9, 1e9, allow_nan=False), st.none()),
        min_size=1,  # a device sends at least one reading
        max_size=4,
    ),
    location=st.none() | st.tuples(st.floats(-180, 180), st.floats(-90, 90)),
)
def test_device_vendor_csv_round_trips(
    device: str,
    time: int,
    values: dict[str, tuple[float, None]],
    location: tuple[float, float] | None,
) -> None:
    """devices/vendor.py writes the CSV line gateway/vendor.py reads back, field for field."""
    line = device_vendor.to_csv(device, time, dict(values), location)
    reading = decode_vendor_csv(line)
    assert (reading.device_id, reading.time) == (device, time)
    assert reading.fields == {name: value for name, (value, _) in values.items()}
    if location is not None:
        assert (reading.lon, reading.lat) == location


def _payloads() -> st.SearchStrategy[tuple[str, bytes]]:
    packs = st.one_of(SENML_PACKS, plausible_packs(), plausible_packs())
    return st.one_of(
        packs.map(lambda p: ("senml-json", _json(p))),
        packs.map(
            lambda p: (
                "senml-cbor",
                cbor2.dumps([{_CBOR.get(k, k): v for k, v in r.items()} for r in p]),
            )
        ),
        vendor_json_docs().map(lambda d: ("vendor-json", _json(d))),
        vendor_csv_lines().map(lambda line: ("vendor-csv", line)),
        st.tuples(st.sampled_from(FORMATS), st.binary(max_size=40)),
    )


_CBOR = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6, "n": 0, "u": 1, "v": 2}
_CBOR |= {"vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8}


def _check(result: Normalized) -> None:
    """Entities the platform can take: JSON that orjson writes, no NaN or infinity in it."""
    orjson.dumps(result.entities)
    assert result.readings >= 1
    for doc in result.entities:
        for attr in doc.values():
            if isinstance(attr, dict) and isinstance(attr.get("value"), float):
                assert math.isfinite(attr["value"])


@given(
    payload=_payloads(),
    device=st.one_of(st.none(), st.sampled_from(DEVICES), st.text(max_size=90)),
    received_at=st.one_of(st.floats(0, 4e9), NUMBERS.filter(lambda n: isinstance(n, float))),
    protocol=st.sampled_from(["mqtt", "coap"]),
    source=st.one_of(st.none(), st.just("::1")),
)
@example(
    payload=("senml-json", b'[{"bn":"urn:dev:r197:weather-1:","n":"temperature","v":1}]'),
    device=None,
    received_at=math.inf,
    protocol="mqtt",
    source=None,
)
def test_normalize_any_format_yields_entities_or_rejects(
    payload: tuple[str, bytes], device: str | None, received_at: float, protocol: str, source: str
) -> None:
    fmt, data = payload
    inbound = Inbound(protocol, data, fmt, received_at, device, source)  # type: ignore[arg-type]
    try:
        result = normalize(inbound, PROFILES)
    except RejectedPayload:
        return
    _check(result)


_FAST_NUMBERS = st.one_of(
    st.floats(-1e3, 1e3),
    st.integers(-(2**54), 2**54),
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**28 - 1, 2**28, 2**28 + 0.5]),
    NUMBERS,
    st.booleans(),
)


@given(
    device=st.sampled_from([*DEVICES, "noise-7:x"]),
    name=st.sampled_from([*SENML_FIELDS, "lat", "lon", "nothing"]),
    unit=st.sampled_from(["dB", "Cel", "%RH", "Pa", "", "lat"]),
    bt=st.one_of(_FAST_NUMBERS, st.floats(1.6e9, 2e9), st.floats(LATEST - 10, LATEST + 10)),
    v=_FAST_NUMBERS,
    cbor=st.booleans(),
    topic_device=st.sampled_from([None, "noise-7", "weather-1", "noise-8"]),
    received_at=st.sampled_from([1.8e9, LATEST - 1, 0.0]),
)
def test_one_record_fast_path_agrees_with_the_general_path(
    device: str, name: str, unit: str, bt: Any, v: Any, cbor: bool, topic_device: str | None,
    received_at: float,
) -> None:  # fmt: skip
    """gateway/normalizer.py's shortcut for the usual one-record pack gives exactly what the
    general path gives, or leaves the pack to it (a differential property)."""
    from gateway import normalizer  # noqa: PLC0415  # the private paths, for this test only

    record = {"bn": f"urn:dev:r197:{device}:", "bt": bt, "n": name, "u": unit, "v": v}
    fmt = "senml-cbor" if cbor else "senml-json"
    payload = cbor2.dumps([{_CBOR[k]: x for k, x in record.items()}]) if cbor else _json([record])
    inbound = Inbound("mqtt", payload, fmt, received_at, topic_device)  # type: ignore[arg-type]
    try:
        general: object = normalizer._normalize_senml(inbound, PROFILES)
    except RejectedPayload as exc:
        general = ("rejected", exc.reason, str(exc))
    try:
        quick: object = normalizer._one_record(inbound, PROFILES)
    except RejectedPayload as exc:
        quick = ("rejected", exc.reason, str(exc))
    if quick is not None:
        assert repr(quick) == repr(general)
