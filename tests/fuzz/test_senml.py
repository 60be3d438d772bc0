"""SenML JSON and CBOR (RFC 8428) into the gateway's decoder: only RejectedPayload comes out,
and what the devices' encoder writes the gateway's decoder reads back (interoperability)."""

from __future__ import annotations

import json
import math
from typing import Any

import cbor2
from hypothesis import example, given
from hypothesis import strategies as st

from devices import senml as device_senml
from gateway import senml
from gateway.errors import RejectedPayload
from tests.fuzz.strategies import NAME_CHARS, SCALARS, SENML_PACKS, json_values, nested

NOW = 1_800_000_000.0
LABELS = {name: label for label, name in senml.CBOR_LABELS.items()}


def to_json(value: Any) -> bytes:
    """JSON as a careless encoder writes it: NaN, Infinity, any integer (bytes as hex)."""
    return json.dumps(value, default=lambda b: b.hex()).encode()


def _decode_resolve(payload: bytes, cbor: bool) -> None:
    try:
        pack = senml.decode_cbor(payload) if cbor else senml.decode_json(payload)
        records = senml.resolve(pack, now=NOW)
    except RejectedPayload:
        return
    for record in records:  # what comes out is usable: a valid name, a time in range
        assert senml.valid_name(record.name)
        assert senml.valid_time(record.time)
        if isinstance(record.value, float):
            assert not math.isnan(record.value)


@given(pack=SENML_PACKS)
def test_senml_json_packs_decode_or_reject(pack: list[dict[str, Any]]) -> None:
    # json.dumps, not orjson: it writes NaN, Infinity and integers beyond 64 bits as well.
    _decode_resolve(to_json(pack), cbor=False)


@given(pack=SENML_PACKS, tagged=st.integers(0, 3))
def test_senml_cbor_packs_decode_or_reject(pack: list[dict[str, Any]], tagged: int) -> None:
    records: list[Any] = [{LABELS.get(k, k): v for k, v in r.items()} for r in pack]
    if tagged == 1 and records:  # a CBOR tag around a record or a value (RFC 8949 3.4)
        records[0] = cbor2.CBORTag(1, records[0])
    elif tagged == 2 and records and records[0]:
        key = next(iter(records[0]))
        records[0][key] = cbor2.CBORTag(4, [-2, 12345])  # a decimal fraction (RFC 8949 3.4.4)
    _decode_resolve(cbor2.dumps(records), cbor=True)


CBOR_ODDITIES = st.sampled_from(
    [
        b"\xd9\xd9\xf7\x81\xa1\x00\x61a",  # self-described CBOR tag 55799 around the pack
        b"\x81\xa1\x02\xc2\x49\x01" + b"\x00" * 8,  # v: a bignum beyond any double (tag 2)
        b"\x81\xa1\x02\xc1\xfb\x7f\xf0" + b"\x00" * 6,  # v: epoch time tag 1 of +inf
        b"\x81\xa1\x02\xc0\x61x",  # v: date/time string tag 0 that is not a date
        b"\x9f\xa1\x00\x61a\xff",  # an indefinite-length array
        b"\x81\xbf\x00\x61a\xff",  # an indefinite-length map
        b"\x81\xa1\x81\x00\x00",  # a map key that is an array (unhashable in Python)
        b"\x81\xa1\xa1\x00\x00\x00",  # a map key that is a map
        b"\x81\xa1\x02\xd8\x1e\x82\x01\x00",  # v: a rational 1/0 (tag 30)
        b"\x81\xa1\x02\xd8\x19\x00",  # v: a stringref (tag 25) with no namespace
        b"\x81\xa1\x02\xd8\x1d\x00",  # v: a shared reference (tag 29) to nothing
        b"\x81\xa1\x02\xf7",  # v: undefined
        b"\x81\xa1\x02\xf9\x7e\x00",  # v: a half-precision NaN
        b"\x81\xa1\x02\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # v: 2**64 - 1
        b"\x81\xa1\x02\x3b\xff\xff\xff\xff\xff\xff\xff\xff",  # v: -2**64
        b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff",  # an array of 2**64 - 1 items, cut short
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64 - 1 bytes
        b"\x81" * 5000 + b"\xa0",  # arrays nested 5000 deep
        b"\xd8\x1c" * 200 + b"\x80",  # tag 28 (shareable) nested 200 deep
    ]
)


@given(payload=st.one_of(CBOR_ODDITIES, st.binary(max_size=64)))
@example(payload=b"\x81\xa1\x02\xc2\x49\x01" + b"\x00" * 8)
def test_senml_cbor_bytes_decode_or_reject(payload: bytes) -> None:
    _decode_resolve(payload, cbor=True)


@given(value=json_values(SCALARS), depth=st.integers(0, 3000))
def test_senml_json_any_value_and_deep_nesting(value: Any, depth: int) -> None:
    _decode_resolve(to_json(nested(depth % 1100, value, key=None)), cbor=False)
    _decode_resolve(cbor2.dumps(nested(depth, value, key=None)), cbor=True)


DEVICE_IDS = st.from_regex(r"\A[a-z][a-z0-9]{0,8}-[A-Za-z0-9_.-]{1,12}\Z")
READING_NAMES = st.text(alphabet=NAME_CHARS, min_size=1, max_size=16).filter(
    lambda n: n[0].isalnum() and ":" not in n
)
READINGS = st.dictionaries(
    READING_NAMES,
    st.tuples(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
            st.text(max_size=12),
            st.booleans(),
        ),
        st.one_of(st.none(), st.sampled_from(["Cel", "%RH", "Pa", "m/s", "dB"])),
    ),
    min_size=1,
    max_size=5,
)


@given(
    device=DEVICE_IDS,
    time=st.floats(min_value=2.0**28, max_value=senml.LATEST, allow_nan=False),
    values=READINGS,
    cbor=st.booleans(),
)
def test_device_encoder_round_trips_through_gateway_decoder(
    device: str, time: float, values: dict[str, tuple[float | str | bool, str | None]], cbor: bool
) -> None:
    """devices/senml.py encodes, gateway/senml.py decodes: name, time, unit and value survive."""
    pack = device_senml.pack(device, time, values)
    payload = device_senml.to_cbor(pack) if cbor else device_senml.to_json(pack)
    decoded = senml.decode_cbor(payload) if cbor else senml.decode_json(payload)
    records = senml.resolve(decoded, now=NOW)
    base = f"urn:dev:r197:{device}:"
    assert [(r.name, r.time, r.unit, r.value) for r in records] == [
        (base + name, time, unit or None, value) for name, (value, unit) in values.items()
    ]
