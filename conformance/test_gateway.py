"""R197-GW: the gateway seen from outside: device payload in, NGSI-LD attributes out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import cbor2
import httpx

from conformance.coap_raw import CON, CONTENT_FORMAT, POST, Endpoint, Message, path_options, uint
from conformance.iut import RoleConfig
from conformance.model import case
from conformance.mqtt_client import ProbeClient
from conformance.observed import expect_status, iut_json

T = 1_795_579_200  # 2026-11-25T04:00:00Z
ISO = "2026-11-25T04:00:00.000Z"


def device(kind: str) -> str:
    return f"{kind}-c{uuid.uuid4().hex[:8]}"


def publish(broker: RoleConfig, topic: str, payload: bytes) -> None:
    client = ProbeClient(broker)
    client.connect()
    client.publish(topic, payload, qos=1)
    client.disconnect()


def platform_entity(
    platform: RoleConfig, entity_id: str, attr: str, within: float = 15
) -> dict[str, Any]:
    url = f"{platform.url.rstrip('/')}/ngsi-ld/v1/entities/{entity_id}"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = httpx.get(url)
        # The platform's copy is the gateway's output: a member it lacks is the gateway's fail.
        if r.status_code == 200 and attr in (got := iut_json(r.content, f"GET {url}")):
            return dict(got)
        time.sleep(0.1)
    raise AssertionError(f"{entity_id}.{attr} did not reach the platform within {within} s")


def history(platform: RoleConfig, entity_id: str, attr: str) -> list[dict[str, Any]]:
    url = f"{platform.url.rstrip('/')}/ngsi-ld/v1/temporal/entities/{entity_id}"
    r = httpx.get(url, params={"attrs": attr, "lastN": "1000"})
    expect_status(r, 200)
    return list(iut_json(r.content, f"GET {url}").get(attr, []))


def senml_cbor(dev: str, records: list[dict[int, Any]]) -> bytes:
    records[0] = {-2: f"urn:dev:r197:{dev}:", -3: T, **records[0]}
    return cbor2.dumps(records)


def push(gateway: RoleConfig, dev: str, payload: bytes, fmt: int) -> str:
    ep = Endpoint(gateway.url)
    try:
        path = gateway.resources.get("push", "/up") + f"/{dev}"
        msg = Message(
            CON,
            POST,
            ep.next_mid(),
            b"\x01",
            [*path_options(path), (CONTENT_FORMAT, uint(fmt))],
            payload,
        )
        return ep.request(msg).code_text
    finally:
        ep.close()


@case("R197-GW-01", "A SenML CBOR reading over MQTT becomes an NGSI-LD Property with value, unitCode and UTC observedAt",
      verifies=["RFC8428-6", "CIM009-4.5.2", "Y4200-8.1"], theme="interoperability", pics=["senml.cbor"])  # fmt: skip
def test_senml_cbor_over_mqtt(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    dev = device("weather")
    publish(
        mqtt_broker,
        f"city/weather/{dev}/up/senml-cbor",
        senml_cbor(dev, [{0: "temperature", 1: "Cel", 2: 18.25}]),
    )
    got = platform_entity(ngsild_platform, f"urn:ngsi-ld:WeatherObserved:{dev}", "temperature")
    assert got["temperature"]["value"] == 18.25
    assert got["temperature"]["unitCode"] == "CEL"
    assert got["temperature"]["observedAt"] == ISO


@case("R197-GW-02", "The same reading over MQTT (SenML CBOR), CoAP (SenML JSON) and MQTT (vendor JSON, °F, local time) gives equal attributes",
      verifies=["RFC8428-4.6", "Y4200-8.1", "Y4201-7"], theme="interoperability",
      pics=["senml.cbor", "senml.json", "gateway.vendor-json", "gateway.coap-push"])  # fmt: skip
def test_three_paths_agree(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    a, b, c = device("weather"), device("weather"), device("weather")
    publish(
        mqtt_broker,
        f"city/weather/{a}/up/senml-cbor",
        senml_cbor(a, [{0: "temperature", 1: "Cel", 2: 20.0}]),
    )
    body = json.dumps(
        [{"bn": f"urn:dev:r197:{b}:", "bt": T, "n": "temperature", "u": "Cel", "v": 20.0}]
    ).encode()
    assert push(gateway, b, body, 110) == "2.04"
    vendor = json.dumps({"dev": c, "time": "2026-11-25T06:00:00+02:00", "tempF": 68.0}).encode()
    publish(mqtt_broker, f"city/weather/{c}/up/vendor-json", vendor)
    props = [
        platform_entity(ngsild_platform, f"urn:ngsi-ld:WeatherObserved:{d}", "temperature")[
            "temperature"
        ]
        for d in (a, b, c)
    ]
    assert props[0] == props[1] == props[2], props


@case("R197-GW-03", "Units are converted to the Smart Data Model's (Pa -> hPa A97, kg/m3 -> µg/m³ GQ)",
      verifies=["RFC8428-12.1", "REC20", "Y4201-7"], theme="interoperability", pics=["senml.cbor"])  # fmt: skip
def test_unit_conversion(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    w, q = device("weather"), device("airquality")
    publish(
        mqtt_broker,
        f"city/weather/{w}/up/senml-cbor",
        senml_cbor(w, [{0: "pressure", 1: "Pa", 2: 101325}]),
    )
    publish(
        mqtt_broker,
        f"city/airquality/{q}/up/senml-cbor",
        senml_cbor(q, [{0: "pm25", 1: "kg/m3", 2: 12e-9}]),
    )
    pressure = platform_entity(
        ngsild_platform, f"urn:ngsi-ld:WeatherObserved:{w}", "atmosphericPressure"
    )
    pm = platform_entity(ngsild_platform, f"urn:ngsi-ld:AirQualityObserved:{q}", "pm25")
    assert pressure["atmosphericPressure"]["value"] == 1013.25
    assert pressure["atmosphericPressure"]["unitCode"] == "A97"
    assert pm["pm25"]["value"] == 12.0
    assert pm["pm25"]["unitCode"] == "GQ"


@case("R197-GW-04", "A local time with a UTC offset becomes UTC observedAt",
      verifies=["RFC3339-5.6", "CIM009-4.8"], theme="interoperability", pics=["gateway.vendor-json"])  # fmt: skip
def test_utc(mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig) -> None:
    dev = device("noise")
    vendor = json.dumps({"dev": dev, "time": "2026-11-25T09:30:00+05:30", "laeq_db": 50}).encode()
    publish(mqtt_broker, f"city/noise/{dev}/up/vendor-json", vendor)
    got = platform_entity(ngsild_platform, f"urn:ngsi-ld:NoiseLevelObserved:{dev}", "LAeq")
    assert got["LAeq"]["observedAt"] == ISO


@case("R197-GW-05", "Entity ids are stable (urn:ngsi-ld:<Type>:<device>) with a refDevice to the Device entity",
      verifies=["CIM009-4.6.1", "Y4200-8.1"], theme="interoperability", pics=["senml.cbor"])  # fmt: skip
def test_stable_ids(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    dev = device("flood")
    publish(
        mqtt_broker,
        f"city/flood/{dev}/up/senml-cbor",
        senml_cbor(dev, [{0: "waterLevel", 1: "m", 2: 1.5}]),
    )
    got = platform_entity(ngsild_platform, f"urn:ngsi-ld:FloodMonitoring:{dev}", "currentLevel")
    assert got["refDevice"]["object"] == f"urn:ngsi-ld:Device:{dev}"
    platform_entity(ngsild_platform, f"urn:ngsi-ld:Device:{dev}", "dateLastValueReported")


@case("R197-GW-06", "N readings in give exactly N history instances out, in device order",
      verifies=["Y4200-8.3", "CIM009-4.5.7"], theme="resilience", pics=["senml.cbor"])  # fmt: skip
def test_one_in_one_out_in_order(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    dev = device("noise")
    client = ProbeClient(mqtt_broker)
    client.connect()
    for n in range(20):
        body = cbor2.dumps([{-2: f"urn:dev:r197:{dev}:", -3: T + n, 0: "LAeq", 1: "dB", 2: 40 + n}])
        client.publish(f"city/noise/{dev}/up/senml-cbor", body, qos=1)
    client.disconnect()
    entity_id = f"urn:ngsi-ld:NoiseLevelObserved:{dev}"
    deadline = time.monotonic() + 15
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(items) < 20:
        platform_entity(ngsild_platform, entity_id, "LAeq")
        items = history(ngsild_platform, entity_id, "LAeq")
        time.sleep(0.2)
    time.sleep(0.5)
    items = history(ngsild_platform, entity_id, "LAeq")
    assert len(items) == 20, f"{len(items)} history instances for 20 readings"
    assert [i["value"] for i in items] == [40 + n for n in range(20)]


@case("R197-GW-07", "Malformed payloads are rejected while good readings keep flowing",
      verifies=["Y4200-8.3", "RFC8428-4.4"], theme="resilience", pics=["senml.json"])  # fmt: skip
def test_bad_input_does_not_stop_good(
    mqtt_broker: RoleConfig, gateway: RoleConfig, ngsild_platform: RoleConfig
) -> None:
    dev = device("noise")
    client = ProbeClient(mqtt_broker)
    client.connect()
    for n in range(50):
        client.publish(f"city/noise/{dev}/up/senml-json", b'[{"n": ' + str(n).encode(), qos=0)
    good = json.dumps(
        [{"bn": f"urn:dev:r197:{dev}:", "bt": T, "n": "LAeq", "u": "dB", "v": 61.0}]
    ).encode()
    client.publish(f"city/noise/{dev}/up/senml-json", good, qos=1)
    client.disconnect()
    got = platform_entity(ngsild_platform, f"urn:ngsi-ld:NoiseLevelObserved:{dev}", "LAeq")
    assert got["LAeq"]["value"] == 61.0


@case("R197-GW-08", "CoAP push answers 2.04 for a good reading, 4.00 malformed, 4.15 unknown Content-Format",
      verifies=["RFC7252-5.9.1.4", "RFC7252-5.9.2.1", "RFC7252-5.9.2.9"], theme="interoperability",
      pics=["gateway.coap-push"])  # fmt: skip
def test_coap_push_codes(gateway: RoleConfig) -> None:
    dev = device("noise")
    good = json.dumps(
        [{"bn": f"urn:dev:r197:{dev}:", "bt": T, "n": "LAeq", "u": "dB", "v": 50}]
    ).encode()
    assert push(gateway, dev, good, 110) == "2.04"
    assert push(gateway, dev, b"[{", 110) == "4.00"
    assert push(gateway, dev, b"x", 41) == "4.15"


@case("R197-GW-09", "A reading in a wrong unit is rejected rather than stored",
      verifies=["RFC8428-12.1", "Y4201-7"], theme="interoperability", pics=["gateway.coap-push"])  # fmt: skip
def test_wrong_unit_rejected(gateway: RoleConfig) -> None:
    dev = device("weather")
    body = json.dumps(
        [{"bn": f"urn:dev:r197:{dev}:", "bt": T, "n": "temperature", "u": "K", "v": 293}]
    ).encode()
    assert push(gateway, dev, body, 110) == "4.00"
