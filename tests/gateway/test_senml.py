"""The gateway's SenML decoder against RFC 8428's examples and its error cases."""

from __future__ import annotations

import math

import cbor2
import orjson
import pytest

from gateway import senml
from gateway.errors import RejectedPayload

NOW = 1_800_000_000.0

# RFC 8428 section 5.1.2: multiple data points with a base name.
RFC_5_1_2 = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]
# RFC 8428 section 5.1.3: multiple measurements, base time, base unit, relative times.
RFC_5_1_3 = [
    {"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1.276020076001e09, "bu": "A", "bver": 5,
     "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]  # fmt: skip
# RFC 8428 section 5.1.5: multiple data values, records without "n".
RFC_5_1_5 = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
]
# RFC 8428 section 5.1.1: a single datapoint with no time (relative to now).
RFC_5_1_1 = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]

LABELS = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6, "n": 0, "u": 1, "v": 2,
          "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8}  # fmt: skip


def to_cbor(pack: list[dict[str, object]]) -> bytes:
    return cbor2.dumps([{LABELS[k]: v for k, v in record.items()} for record in pack])


def test_rfc_5_1_2_base_name_concatenates() -> None:
    """Names are base name + name; units stay per record."""
    records = senml.resolve(senml.decode_json(orjson.dumps(RFC_5_1_2)), now=NOW)
    assert [(r.name, r.unit, r.value) for r in records] == [
        ("urn:dev:ow:10e2073a01080063:voltage", "V", 120.1),
        ("urn:dev:ow:10e2073a01080063:current", "A", 1.2),
    ]
    assert all(r.time == NOW for r in records)


def test_rfc_5_1_3_relative_times_and_base_unit() -> None:
    """bt + t gives absolute times; bu applies where u is absent."""
    records = senml.resolve(senml.decode_json(orjson.dumps(RFC_5_1_3)), now=NOW)
    assert len(records) == 7
    assert records[0].unit == "V"
    assert {r.unit for r in records[1:]} == {"A"}
    assert math.isclose(records[1].time, 1.276020071001e09)
    assert math.isclose(records[-1].time, 1.276020076001e09)


def test_rfc_5_1_5_records_without_names_use_the_base_name() -> None:
    """Records without n are named by bn; lon/lat units are kept."""
    records = senml.resolve(senml.decode_json(orjson.dumps(RFC_5_1_5)), now=NOW)
    assert {r.name for r in records} == {"urn:dev:ow:10e2073a01080063:"}
    assert [r.unit for r in records[:3]] == ["%RH", "lon", "lat"]
    assert math.isclose(records[3].time, 1.320067464e09 + 60)


def test_rfc_5_1_1_no_time_means_now() -> None:
    """A record without time is 'roughly now' (section 4.5.3)."""
    (record,) = senml.resolve(senml.decode_json(orjson.dumps(RFC_5_1_1)), now=NOW)
    assert record.time == NOW


@pytest.mark.parametrize("pack", [RFC_5_1_2, RFC_5_1_3, RFC_5_1_5])
def test_cbor_and_json_resolve_to_the_same_records(pack: list[dict[str, object]]) -> None:
    """The CBOR representation with integer labels (section 6) resolves like the JSON one."""
    from_json = senml.resolve(senml.decode_json(orjson.dumps(pack)), now=NOW)
    from_cbor = senml.resolve(senml.decode_cbor(to_cbor(pack)), now=NOW)
    assert from_json == from_cbor


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b'{"n": "x", "v": 1}', "malformed"),
        (b'[{"n": "x", "v": 1, "vs": "a"}]', "malformed"),
        (b'[{"n": "x"}]', "malformed"),
        (b'[{"n": "-bad", "v": 1}]', "malformed"),
        (b'[{"n": "x y", "v": 1}]', "malformed"),
        (b'[{"n": "x", "v": "1"}]', "malformed"),
        (b'[{"n": "x", "v": 1, "foo": 2}]', "malformed"),
        (b'[{"n": "x", "v": 1, "crit_": 2}]', "malformed"),
        (b"[]", "malformed"),
        (b'[{"n": "x", "v": 1e999}]', "malformed"),  # not JSON (RFC 8259 has no Infinity)
    ],
)
def test_invalid_senml_json_is_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    """Each violation of RFC 8428 is a RejectedPayload with its reason."""
    with pytest.raises(RejectedPayload) as info:
        senml.resolve(senml.decode_json(payload), now=NOW)
    assert info.value.reason == reason


def test_invalid_cbor_is_rejected() -> None:
    """Garbage, non-arrays and unknown integer labels are malformed."""
    for payload in (b"\xff\xfe\x00", cbor2.dumps({"n": 1}), cbor2.dumps([{99: 1}])):
        with pytest.raises(RejectedPayload) as info:
            senml.decode_cbor(payload)
        assert info.value.reason == "malformed"


def test_nan_in_cbor_is_an_invalid_value() -> None:
    """CBOR can carry NaN; SenML values must be finite numbers."""
    with pytest.raises(RejectedPayload) as info:
        senml.resolve(senml.decode_cbor(cbor2.dumps([{0: "x", 2: float("nan")}])), now=NOW)
    assert info.value.reason == "invalid-value"


def test_an_integer_beyond_any_double_is_an_invalid_value() -> None:
    """CBOR and JSON carry integers of any size; one no double can hold is rejected, not a crash
    (float() of it raises OverflowError)."""
    huge = 10**400
    packs = (
        [{"n": "x", "v": huge}],
        [{"n": "x", "v": 1, "t": huge}],
        [{"bt": huge, "n": "x", "v": 1}],
    )
    for pack in packs:
        with pytest.raises(RejectedPayload) as info:
            senml.resolve(senml.decode_cbor(to_cbor(pack)), now=NOW)
        assert info.value.reason == "invalid-value"


@pytest.mark.parametrize("name", [5, 1.5, None, ["x"]])
def test_a_name_that_is_not_a_string_is_malformed(name: object) -> None:
    """Section 4.5.1: n is a string; another type is rejected before it is joined to bn."""
    with pytest.raises(RejectedPayload) as info:
        senml.resolve([{"bn": "urn:dev:ow:1:", "n": name, "v": 1.0}], now=NOW)
    assert info.value.reason == "malformed"


def test_names_are_checked_every_time_they_come() -> None:
    """The remembered verdict per name must not let a bad name through after a good one."""
    good = [{"n": "urn:dev:ow:1:temp", "v": 1.0}]
    assert senml.resolve(good, now=NOW)[0].name == "urn:dev:ow:1:temp"
    for _ in range(2):
        with pytest.raises(RejectedPayload):
            senml.resolve([{"n": "urn:dev:ow:1:te mp", "v": 1.0}], now=NOW)
    assert senml.resolve(good, now=NOW)[0].name == "urn:dev:ow:1:temp"
