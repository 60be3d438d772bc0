# ruff: noqa: E501  # the table of bad payloads reads best one case per line
"""The pure normalizer: formats, conversions, entity mapping and every rejection reason."""

from __future__ import annotations

from datetime import UTC, datetime
from random import Random
from typing import Any

import cbor2
import orjson
import pytest

from gateway import normalizer
from gateway.errors import RejectedPayload
from gateway.normalizer import Inbound, iso, normalize
from gateway.profiles import Profiles

NOW = 1_795_579_300.0  # 2026-11-25T04:01:40Z
T = 1_795_579_200  # 2026-11-25T04:00:00Z
PROFILES = Profiles()
BN = "urn:dev:r197:weather-0001:"


def senml_pack() -> list[dict[str, Any]]:
    return [
        {"bn": BN, "bt": T, "n": "temperature", "u": "Cel", "v": 21.5},
        {"n": "humidity", "u": "%RH", "v": 55},
        {"n": "pressure", "u": "Pa", "v": 101320},
        {"n": "lat", "u": "lat", "v": 46.2044},
        {"n": "lon", "u": "lon", "v": 6.1432},
    ]


def cbor(pack: list[dict[str, Any]]) -> bytes:
    labels = {"bn": -2, "bt": -3, "bu": -4, "n": 0, "u": 1, "v": 2, "vs": 3, "t": 6}
    return cbor2.dumps([{labels[k]: v for k, v in r.items()} for r in pack])


def run(
    payload: bytes, fmt: str, device: str | None = "weather-0001", protocol: str = "mqtt"
) -> Any:
    return normalize(Inbound(protocol, payload, fmt, NOW, device, "::1"), PROFILES)  # type: ignore[arg-type]


def attrs(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in ("id", "type")}


def test_senml_json_maps_to_weather_observed_with_units_and_utc_time() -> None:
    """Names map to Smart Data Model attributes, SenML units to UN/CEFACT codes, time to UTC."""
    out = run(orjson.dumps(senml_pack()), "senml-json")
    weather, device = out.entities
    assert weather["id"] == "urn:ngsi-ld:WeatherObserved:weather-0001"
    assert weather["type"] == "WeatherObserved"
    assert weather["temperature"] == {
        "type": "Property", "value": 21.5, "unitCode": "CEL",
        "observedAt": "2026-11-25T04:00:00.000Z",
    }  # fmt: skip
    assert weather["relativeHumidity"]["unitCode"] == "P1"
    assert weather["atmosphericPressure"]["value"] == 1013.2  # Pa -> hPa
    assert weather["atmosphericPressure"]["unitCode"] == "A97"
    assert weather["location"]["value"] == {"type": "Point", "coordinates": [6.1432, 46.2044]}
    assert weather["refDevice"]["object"] == "urn:ngsi-ld:Device:weather-0001"
    assert device["id"] == "urn:ngsi-ld:Device:weather-0001"
    assert device["supportedProtocol"]["value"] == ["mqtt"]
    assert device["ipAddress"]["value"] == ["::1"]
    assert device["deviceCategory"]["value"] == ["weather"]
    assert device["dateLastValueReported"]["value"] == "2026-11-25T04:00:00.000Z"
    assert out.readings == 3


def test_the_same_reading_in_every_format_gives_equal_attributes() -> None:
    """SenML JSON, SenML CBOR, vendor JSON (Fahrenheit, local time) and CSV agree."""
    pack = senml_pack()[:3]
    vendor = {"dev": "weather-0001", "time": "2026-11-25T06:00:00+02:00", "tempF": 70.7,
              "rh": 55, "baro_hPa": 1013.2}  # fmt: skip
    csv = f"weather-0001,{T},temperature=21.5,humidity=55,pressure=101320".encode()
    results = [
        run(orjson.dumps(pack), "senml-json"),
        run(cbor(pack), "senml-cbor", protocol="coap"),
        run(orjson.dumps(vendor), "vendor-json"),
        run(csv, "vendor-csv"),
    ]
    first = attrs(results[0].entities[0])
    for other in results[1:]:
        assert attrs(other.entities[0]) == first


def test_unit_conversions_follow_the_contract() -> None:
    """kg/m3 -> µg/m3, rad -> degrees, m/s -> km/h, J -> kWh, % -> ratio."""
    cases = [
        ("airquality-1", "pm25", "kg/m3", 25e-9, "pm25", 25.0, "GQ"),
        ("weather-1", "windDirection", "rad", 3.141592653589793, "windDirection", 180.0, "DD"),
        ("traffic-1", "averageSpeed", "m/s", 10, "averageVehicleSpeed", 36.0, "KMH"),
        ("energy-1", "energy", "J", 7.2e6, "activeEnergyImport", 2.0, "KWH"),
        ("streetlight-1", "dimmingLevel", "%", 40, "illuminanceLevel", 0.4, "C62"),
        ("flood-1", "waterLevel", "m", 1.25, "currentLevel", 1.25, "MTR"),
        ("soil-1", "soilMoisture", "/", 0.27, "soilMoistureVwc", 0.27, "C62"),
        ("indoor-1", "co2", "ppm", 1250, "co2", 1250.0, "59"),
        ("indoor-1", "humidity", "%RH", 45, "relativeHumidity", 0.45, "C62"),
        ("indoor-1", "peopleCount", "count", 28, "peopleCount", 28.0, "C62"),
    ]
    for device, name, unit, value, attr, expected, code in cases:
        pack = [{"bn": f"urn:dev:r197:{device}:", "bt": T, "n": name, "u": unit, "v": value}]
        entity = run(orjson.dumps(pack), "senml-json", device).entities[0]
        assert entity[attr]["value"] == expected, name
        assert entity[attr]["unitCode"] == code


def test_text_measurements_and_relative_times() -> None:
    """vs strings are kept; a pack with relative times becomes one update per time."""
    pack = [
        {"bn": "urn:dev:r197:parking-7:", "bt": T, "n": "status", "vs": "free"},
        {"n": "status", "t": 60, "vs": "occupied"},
    ]
    out = run(orjson.dumps(pack), "senml-json", "parking-7")
    spots = [e for e in out.entities if e["type"] == "ParkingSpot"]
    assert [e["status"]["value"] for e in spots] == ["free", "occupied"]
    assert spots[1]["status"]["observedAt"] == "2026-11-25T04:01:00.000Z"


def test_auto_provisioning_from_the_senml_base_name() -> None:
    """Without a device id from the transport, the base name names the device."""
    out = run(orjson.dumps(senml_pack()), "senml-json", device=None)
    assert out.device_id == "weather-0001"


@pytest.mark.parametrize(
    ("payload", "fmt", "device", "reason"),
    [
        (b"x" * 70_000, "senml-json", "weather-1", "oversized"),
        (b"[{", "senml-json", "weather-1", "malformed"),
        (b"\x00\x01", "senml-cbor", "weather-1", "malformed"),
        (orjson.dumps([{"n": "temperature", "u": "Cel", "v": 20}]), "senml-json", "lamp-1", "unknown-device"),
        (orjson.dumps([{"n": "temperature", "u": "Cel", "v": 20}]), "senml-json", None, "unknown-device"),
        (orjson.dumps([{"bn": "urn:dev:r197:weather-9:", "n": "temperature", "v": 1}]), "senml-json", "weather-1", "mismatched-device"),
        (orjson.dumps([{"n": "temperature", "u": "K", "v": 290}]), "senml-json", "weather-1", "wrong-unit"),
        (orjson.dumps([{"n": "colour", "v": 1}]), "senml-json", "weather-1", "unknown-measurement"),
        (orjson.dumps([{"n": "temperature", "u": "Cel", "v": 500}]), "senml-json", "weather-1", "invalid-value"),
        (orjson.dumps([{"n": "status", "vs": "maybe"}]), "senml-json", "parking-1", "invalid-value"),
        (orjson.dumps({"dev": "weather-1", "tempF": 70}), "vendor-json", "weather-1", "malformed"),
        (orjson.dumps({"time": "2026-11-25T06:00:00", "tempF": 70}), "vendor-json", "weather-1", "malformed"),
        (orjson.dumps({"time": "2026-11-25T06:00:00Z", "hue": 7}), "vendor-json", "weather-1", "unknown-measurement"),
        (b"weather-1,notatime,temperature=1", "vendor-csv", "weather-1", "malformed"),
        (b"weather-1,1795579200,temperature", "vendor-csv", "weather-1", "malformed"),
        (b"x", "protobuf", "weather-1", "unsupported-format"),
    ],
)  # fmt: skip
def test_bad_payloads_are_rejected_with_their_reason(
    payload: bytes, fmt: str, device: str | None, reason: str
) -> None:
    """Every kind of bad input is a RejectedPayload naming why, never a crash."""
    with pytest.raises(RejectedPayload) as info:
        run(payload, fmt, device)
    assert info.value.reason == reason
    assert info.value.coap_code[0] == 4
    assert info.value.mqtt_reason_code >= 0x80


def test_iso_stamps_match_datetime_to_the_millisecond() -> None:
    """The cached formatter gives what datetime gives, rounding included (observedAt form)."""
    rng = Random(197)
    stamps = [NOW, NOW + 0.0005, NOW + 0.9999995, 0.0, 1e9 + 0.1234565]
    stamps += [NOW + rng.uniform(-1e8, 1e8) for _ in range(20_000)]
    stamps += [round(NOW + rng.uniform(0, 1e5), 3) for _ in range(20_000)]
    for t in stamps:
        expected = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert iso(t) == expected, t


def test_the_one_record_fast_path_gives_what_the_general_path_gives() -> None:
    """Packs of one record (bn, bt, n, u, v) take a shorter path; on generated packs around
    that shape (other devices, units, kinds of number, times, ranges, unknown names) it
    gives the general path's result exactly, or leaves the pack to the general path."""
    rnd = Random(197)
    devices = ["noise-7", "weather-0001", "parking-3", "bogus-1", "nokind", "noise-7:x"]
    names = ["LAeq", "temperature", "humidity", "status", "lat", "lon", "nothing", "LA eq"]
    units = ["dB", "Cel", "%RH", "K", "", "lat"]
    numbers: list[object] = [
        40.5,
        55,
        -0.0,
        0,
        1e300,
        200.0,
        -5.5,
        True,
        "40",
        None,
        float("nan"),
        2**60,
        21.25,
    ]
    times: list[object] = [float(T), T, 0, -30.5, 1e10, "now", float("inf")]
    fast = 0
    usual = [("noise-7", "LAeq", "dB"), ("weather-0001", "temperature", "Cel"),
             ("weather-0001", "humidity", "%RH"), ("parking-3", "status", "")]  # fmt: skip
    for _ in range(6000):
        device, name, unit = rnd.choice(usual)
        if rnd.random() < 0.3:
            device, name, unit = rnd.choice(devices), rnd.choice(names), rnd.choice(units)
        record = {
            "bn": f"urn:dev:r197:{device}:" if rnd.random() < 0.9 else rnd.choice(["", 5]),
            "bt": rnd.choice(times),
            "n": name,
            "u": unit,
            "v": rnd.choice(numbers),
        }
        fmt = rnd.choice(["senml-json", "senml-cbor"])
        try:
            payload = cbor([record]) if fmt == "senml-cbor" else orjson.dumps([record])
        except (TypeError, orjson.JSONEncodeError):
            continue
        topic_device = rnd.choice([device, None, "noise-8"])
        inbound = Inbound("mqtt", payload, fmt, NOW, topic_device, rnd.choice([None, "::1"]))  # type: ignore[arg-type]
        try:
            general: object = normalizer._normalize_senml(inbound, PROFILES)
        except RejectedPayload as exc:
            general = ("rejected", exc.reason, str(exc))
        try:
            quick: object = normalizer._one_record(inbound, PROFILES)
        except RejectedPayload as exc:
            quick = ("rejected", exc.reason, str(exc))
        if quick is None:
            continue
        fast += 1
        assert repr(quick) == repr(general), (record, fmt, topic_device)
    assert fast > 500  # the fast path did take its shape
