"""R197-SENML and R197-ENERGY: payloads of a CoAP device, and what a reading costs on the wire."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from conformance.coap_raw import (
    ACCEPT,
    CON,
    CONTENT_FORMAT,
    GET,
    Endpoint,
    Message,
    path_options,
    uint,
)
from conformance.iut import IutConfig, RoleConfig
from conformance.model import case
from conformance.observed import excerpt, iut_cbor, iut_json
from conformance.plausible import implausible

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:./_-]*$")
LABELS = {-2: "bn", -3: "bt", -4: "bu", -5: "bv", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 6: "t"}
# RFC 8428 12.1 and RFC 8798 units (those a city sensor uses).
SENML_UNITS = {"m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C",
               "V", "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2",
               "m3", "l", "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon",
               "pH", "dB", "dBW", "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min",
               "beat/min", "beats", "S/m", "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg",
               "NTU", "rad/s", "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh",
               "varh", "kvarh", "kVAh", "Wh/km", "KiB", "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA",
               "dBm", "ug/m3", "mm/h", "m/h", "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h"}  # fmt: skip


@pytest.fixture
def ep(coap_device: RoleConfig) -> Iterator[Endpoint]:
    endpoint = Endpoint(coap_device.url)
    yield endpoint
    endpoint.close()


def fetch(ep: Endpoint, path: str, accept: int) -> Message:
    msg = Message(CON, GET, ep.next_mid(), b"\x05", [*path_options(path), (ACCEPT, uint(accept))])
    return ep.request(msg)


def records_json(payload: bytes) -> list[dict[str, object]]:
    pack = iut_json(payload, "the SenML JSON pack")
    assert isinstance(pack, list), f"a SenML pack is an array: {excerpt(payload)}"
    assert all(isinstance(r, dict) for r in pack), (
        f"a SenML record is an object: {excerpt(payload)}"
    )
    return pack


def records_cbor(payload: bytes) -> list[dict[str, object]]:
    pack = iut_cbor(payload, "the SenML CBOR pack")
    assert isinstance(pack, list), f"a SenML pack is an array: {payload[:200].hex()}"
    assert all(isinstance(r, dict) for r in pack), f"a SenML record is a map: {payload[:200].hex()}"
    return [{LABELS.get(k, str(k)): v for k, v in r.items()} for r in pack]


def readings(records: list[dict[str, object]]) -> list[tuple[str, str | None, object]]:
    """(resolved name, unit, value) of each record: bn + n, u else bu, bv + v (RFC 8428 4.6)."""
    bn, bu, bv = "", None, 0.0
    out: list[tuple[str, str | None, object]] = []
    for r in records:
        bn = str(r.get("bn", bn))
        bu = str(r["bu"]) if "bu" in r else bu
        if isinstance(r.get("bv"), int | float):
            bv = float(r["bv"])  # type: ignore[arg-type]
        value = r.get("v")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = bv + value
        unit = str(r["u"]) if "u" in r else bu
        out.append((bn + str(r.get("n", "")), unit, value))
    return out


def resolved(records: list[dict[str, object]]) -> list[tuple[str, object]]:
    bn = ""
    out = []
    for r in records:
        bn = str(r.get("bn", bn))
        out.append((bn + str(r.get("n", "")), r.get("u")))
    return out


@case("R197-SENML-01", "SenML JSON records have valid names and exactly one value field",
      verifies=["RFC8428-4.5.1", "RFC8428-4.2"], theme="interoperability", pics=["senml.json"])  # fmt: skip
def test_senml_json_valid(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = fetch(ep, coap_device.resources.get("observable", "/sensors"), 110)
    for name, _unit in resolved(records_json(answer.payload)):
        assert NAME.match(name), f"invalid SenML name {name!r}"
    for r in records_json(answer.payload):
        assert sum(k in r for k in ("v", "vs", "vb", "vd")) == 1, r


@case("R197-SENML-02", "SenML CBOR and JSON of the same resource resolve to the same names and units",
      verifies=["RFC8428-6", "RFC8428-4.6"], theme="interoperability", pics=["senml.json", "senml.cbor"])  # fmt: skip
def test_cbor_equals_json(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = coap_device.resources.get("observable", "/sensors")
    as_json = resolved(records_json(fetch(ep, path, 110).payload))
    as_cbor = resolved(records_cbor(fetch(ep, path, 112).payload))
    assert sorted(map(str, as_json)) == sorted(map(str, as_cbor))


@case("R197-SENML-03", "Units come from the SenML units registry",
      verifies=["RFC8428-12.1", "RFC8798"], theme="interoperability", pics=["senml.json"])  # fmt: skip
def test_registered_units(ep: Endpoint, coap_device: RoleConfig) -> None:
    answer = fetch(ep, coap_device.resources.get("observable", "/sensors"), 110)
    units = {str(u) for _n, u in resolved(records_json(answer.payload)) if u is not None}
    assert units <= SENML_UNITS, f"unregistered units {units - SENML_UNITS}"


@case("R197-SENML-04", "The declared Content-Format matches the payload",
      verifies=["RFC7252-5.10.3", "RFC8428-12.3"], theme="interoperability", pics=["senml.json", "senml.cbor"])  # fmt: skip
def test_content_format_matches(ep: Endpoint, coap_device: RoleConfig) -> None:
    path = coap_device.resources.get("observable", "/sensors")
    as_json = fetch(ep, path, 110)
    assert as_json.option(CONTENT_FORMAT) == uint(110)
    records_json(as_json.payload)
    as_cbor = fetch(ep, path, 112)
    assert as_cbor.option(CONTENT_FORMAT) == uint(112)
    records_cbor(as_cbor.payload)


@case("R197-SENML-05", "Every numeric value is plausible for its measurement and unit",
      verifies=["RFC8428-4.5.2"], theme="interoperability", pics=["senml.json"])  # fmt: skip
def test_plausible_values(ep: Endpoint, coap_device: RoleConfig, iut: IutConfig) -> None:
    """A value in another unit than it says (Fahrenheit labelled Cel) is out of the range
    of its measurement (conformance/plausible.py, with the source of each range)."""
    path = coap_device.resources.get("observable", "/sensors")
    packs = {"JSON": records_json(fetch(ep, path, 110).payload)}
    if iut.supports("senml.cbor", ["coap-device"]):
        packs["CBOR"] = records_cbor(fetch(ep, path, 112).payload)
    wrong = [
        f"{why} [SenML {encoding}]"
        for encoding, records in packs.items()
        for name, unit, value in readings(records)
        if isinstance(value, float | int) and not isinstance(value, bool)
        if (why := implausible(name, unit, float(value)))
    ]
    assert not wrong, "; ".join(wrong[:4])


@case("R197-ENERGY-01", "Bytes on the wire per reading (IPv6+UDP+CoAP) are within the PIXIT budget",
      verifies=["Y4201-8", "RFC7252-4.6", "RES197-ENERGY"], theme="energy-efficiency",
      pics=["senml.json"])  # fmt: skip
def test_bytes_per_reading(
    ep: Endpoint, coap_device: RoleConfig, iut: IutConfig, figures: dict[str, float]
) -> None:
    path = coap_device.resources.get("observable", "/sensors")
    request = Message(CON, GET, ep.next_mid(), b"\x05", [*path_options(path), (ACCEPT, uint(110))])
    sent = ep.send(request)
    data, _ = ep.sock.recvfrom(65535)
    wire = sent + len(data) + 2 * (40 + 8)
    figures["coap_get_senml_json_bytes"] = wire
    budget = float(iut.pixit_value("energy.max_bytes_per_reading"))
    assert wire <= budget, f"{wire} bytes per reading, budget {budget}"


@case("R197-ENERGY-02", "The compact encoding (SenML CBOR) is smaller than JSON and offered when asked for",
      verifies=["RFC8428-6", "Y4201-8"], theme="energy-efficiency", pics=["senml.json", "senml.cbor"])  # fmt: skip
def test_cbor_is_compact(ep: Endpoint, coap_device: RoleConfig, figures: dict[str, float]) -> None:
    path = coap_device.resources.get("observable", "/sensors")
    as_json = fetch(ep, path, 110)
    as_cbor = fetch(ep, path, 112)
    figures["senml_json_payload_bytes"] = len(as_json.payload)
    figures["senml_cbor_payload_bytes"] = len(as_cbor.payload)
    assert as_cbor.option(CONTENT_FORMAT) == uint(112), (
        "CBOR not served although both sides support it"
    )
    assert len(as_cbor.payload) < len(as_json.payload)
