"""`testbed up` end to end: real Mosquitto, platform, RD, gateway and devices of every domain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port

LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
# Every domain, both MQTT versions, observed and push CoAP, all four formats.
SCENARIO = """
seed = 7
[endpoints]
coap_base_port = {coap}
[[groups]]
kind = "weather"
count = 1
protocol = "mqtt"
format = "senml-cbor"
interval = 1
[[groups]]
kind = "airquality"
count = 1
protocol = "coap"
format = "senml-json"
interval = 1
[[groups]]
kind = "noise"
count = 1
protocol = "mqtt"
mqtt_version = "3.1.1"
format = "senml-json"
interval = 1
[[groups]]
kind = "traffic"
count = 1
protocol = "mqtt"
format = "vendor-csv"
interval = 1
[[groups]]
kind = "parking"
count = 1
protocol = "coap-push"
format = "senml-cbor"
interval = 1
[[groups]]
kind = "streetlight"
count = 1
protocol = "mqtt"
format = "vendor-json"
interval = 1
[[groups]]
kind = "flood"
count = 1
protocol = "coap"
format = "senml-cbor"
interval = 1
[[groups]]
kind = "energy"
count = 1
protocol = "coap-push"
format = "vendor-json"
interval = 1
"""

EXPECTED = {
    "WeatherObserved": ("weather-0001", {"temperature": "CEL", "atmosphericPressure": "A97"}),
    "AirQualityObserved": ("airquality-0001", {"pm25": "GQ", "no2": "GQ"}),
    "NoiseLevelObserved": ("noise-0001", {"LAeq": "2N"}),
    "TrafficFlowObserved": ("traffic-0001", {"intensity": "C62", "averageVehicleSpeed": "KMH"}),
    "ParkingSpot": ("parking-0001", {"status": None}),
    "Streetlight": ("streetlight-0001", {"powerState": None, "illuminanceLevel": "C62"}),
    "FloodMonitoring": ("flood-0001", {"currentLevel": "MTR"}),
    "SinglePhaseAcMeasurement": ("energy-0001", {"activePower": "WTT"}),
}


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("city")
    scenario = tmp / "all-domains.toml"
    scenario.write_text(SCENARIO.format(coap=free_port("udp") - 20))
    ports = {
        "platform": free_port(),
        "broker": free_port(),
        "rd": free_port("udp"),
        "coap": free_port("udp"),
        "http": free_port(),
    }
    cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(scenario)]
    cmd += ["--data-dir", str(tmp / "data"), "--platform-port", str(ports["platform"])]
    cmd += ["--broker-port", str(ports["broker"]), "--rd-port", str(ports["rd"])]
    cmd += ["--gateway-coap-port", str(ports["coap"]), "--gateway-http-port", str(ports["http"])]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    api = f"http://[::1]:{ports['platform']}/ngsi-ld/v1"
    info = {"proc": proc, "api": api, "ports": ports, "output": ""}
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for_entity(api: str, entity_id: str, attrs: list[str], within: float = 60) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{api}/entities/{entity_id}")
            last = r.text
            if r.status_code == 200 and all(a in r.json() for a in attrs):
                return r.json()
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{entity_id} with {attrs} never appeared; last answer: {last}")


@pytest.mark.slow
def test_every_domain_reaches_the_platform_with_units_and_utc_times(city: dict[str, Any]) -> None:
    """Each domain's entity carries values, UN/CEFACT units, UTC observedAt, location, refDevice."""
    for entity_type, (device, attrs) in EXPECTED.items():
        entity = wait_for_entity(city["api"], f"urn:ngsi-ld:{entity_type}:{device}", list(attrs))
        assert entity["type"] == entity_type
        for attr, unit in attrs.items():
            prop = entity[attr]
            assert prop["type"] == "Property"
            assert prop["observedAt"].endswith("Z")
            assert abs(time.time() - _epoch(prop["observedAt"])) < 120
            if unit:
                assert prop.get("unitCode") == unit, (entity_type, attr)
        assert entity["refDevice"]["object"] == f"urn:ngsi-ld:Device:{device}"
        lon, lat = entity["location"]["value"]["coordinates"]
        assert abs(lon - 6.1432) < 0.1
        assert abs(lat - 46.2044) < 0.1


@pytest.mark.slow
def test_device_entities_name_their_protocol(city: dict[str, Any]) -> None:
    """Device entities record MQTT and CoAP as the protocol each device used."""
    mqtt = wait_for_entity(city["api"], "urn:ngsi-ld:Device:weather-0001", ["supportedProtocol"])
    coap = wait_for_entity(city["api"], "urn:ngsi-ld:Device:flood-0001", ["supportedProtocol"])
    assert mqtt["supportedProtocol"]["value"] == ["mqtt"]
    assert coap["supportedProtocol"]["value"] == ["coap"]
    assert mqtt["deviceCategory"]["value"] == ["weather"]


@pytest.mark.slow
def test_debian_tools_can_talk_to_the_devices(city: dict[str, Any]) -> None:
    """mosquitto_sub sees readings; libcoap's coap-client reads a CoAP device's resources."""
    wait_for_entity(city["api"], "urn:ngsi-ld:FloodMonitoring:flood-0001", ["currentLevel"])
    port = city["ports"]["broker"]
    sub = subprocess.run(
        ["mosquitto_sub", "-h", "::1", "-p", str(port), "-u", "gateway", "-P", "wrong",
         "-t", "city/#", "-C", "1", "-W", "5"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sub.returncode != 0  # the broker checks credentials
    scenario_coap = _device_port(city, "flood-0001")
    wkc = subprocess.run(
        ["coap-client-notls", "-m", "get", f"coap://[::1]:{scenario_coap}/.well-known/core"],
        capture_output=True, text=True, check=True, timeout=20,
    )  # fmt: skip
    assert 'rt="r197.flood"' in wkc.stdout
    assert "</sensors>" in wkc.stdout


def _device_port(city: dict[str, Any], device: str) -> int:
    r = httpx.get(f"{city['api']}/entities/urn:ngsi-ld:Device:{device}")
    ip = r.json()["ipAddress"]["value"][0]
    assert ip == "::1"
    lookup = subprocess.run(
        ["coap-client-notls", "-m", "get", f"coap://[::1]:{city['ports']['rd']}/endpoint-lookup/"],
        capture_output=True, text=True, check=True, timeout=20,
    )  # fmt: skip
    for link in lookup.stdout.split(","):
        if f'ep="{device}"' in link:
            base = link.split('base="')[1].split('"')[0]
            return int(base.rsplit(":", 1)[1])
    raise AssertionError(f"{device} is not in the resource directory: {lookup.stdout}")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_the_city_platform_fetches_no_remote_context(city: dict[str, Any]) -> None:
    """`testbed up` runs the platform offline: a remote @context URL is refused without a
    fetch (503 LdContextNotAvailable), the shipped testbed @context resolves locally, and
    Add @context (5.13.2) still works."""
    api = city["api"]
    wait_for_entity(api, "urn:ngsi-ld:NoiseLevelObserved:noise-0001", ["LAeq"])
    headers = {"NGSILD-Tenant": "offline", "Link": LINK.format("http://[::1]:9/remote.jsonld")}
    r = httpx.post(f"{api}/entities", json={"id": "urn:x:offline", "type": "T"}, headers=headers)
    assert r.status_code == 503, r.text
    assert "never fetches" in r.json()["detail"]
    shipped = api.rsplit("/ngsi-ld", 1)[0] + "/ngsi-ld/contexts/testbed-context.jsonld"
    headers["Link"] = LINK.format(shipped)
    r = httpx.post(f"{api}/entities", json={"id": "urn:x:offline", "type": "T"}, headers=headers)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{api}/jsonldContexts", json={"@context": {"t": "urn:t"}}, headers=headers)
    assert r.status_code == 201, r.text


@pytest.mark.slow
def test_ctrl_c_stops_the_city_cleanly(city: dict[str, Any]) -> None:
    """SIGINT stops every part and the command says so (runs last in this module)."""
    wait_for_entity(city["api"], "urn:ngsi-ld:NoiseLevelObserved:noise-0001", ["LAeq"])
    proc: subprocess.Popen[bytes] = city["proc"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "broker    mosquitto" in text
    assert "@contexts: shipped and added ones only" in text
    assert "city stopped" in text
    with pytest.raises(httpx.HTTPError):
        httpx.get(city["api"].rsplit("/ngsi-ld", 1)[0] + "/health", timeout=2)
