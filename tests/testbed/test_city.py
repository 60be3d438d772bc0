"""`testbed up` end to end: real Mosquitto, platform, RD, gateway and devices of every domain.

The city is the secure default (docs/security.md): MQTT over TLS only with a password per
account, API bearer tokens, the gateway's /notify behind a token.  tests/testbed/
test_city_insecure.py starts the open `--insecure` one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
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
[[groups]]
kind = "soil"
count = 1
protocol = "coap-push"
format = "senml-cbor"
interval = 1
[[groups]]
kind = "indoor"
count = 1
protocol = "mqtt"
format = "senml-json"
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
    "AgriParcelRecord": ("soil-0001", {"soilMoistureVwc": "C62", "soilTemperature": "CEL"}),
    "IndoorEnvironmentObserved": ("indoor-0001", {"co2": "59", "peopleCount": "C62"}),
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
    cmd += ["--dashboard-port", str(free_port())]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []  # what `testbed up` printed so far (read while it runs)
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    api = f"http://[::1]:{ports['platform']}/ngsi-ld/v1"
    info = {"proc": proc, "api": api, "ports": ports, "lines": lines, "reader": reader}
    info["security"] = tmp / "data" / "security"
    try:
        printed(info, "Ctrl-C stops the city", within=90)  # started: tokens minted
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def bearer(city: dict[str, Any], name: str = "reader") -> dict[str, str]:
    """The Authorization header with a token `testbed up` minted (tokens/<name>.jwt)."""
    token = (city["security"] / "tokens" / f"{name}.jwt").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def printed(city: dict[str, Any], pattern: str, within: float = 60) -> re.Match[str]:
    """The first line `testbed up` printed that matches ``pattern``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in list(city["lines"]):
            if found := re.search(pattern, line):
                return found
        time.sleep(0.2)
    raise AssertionError(f"no line matches {pattern!r}: {''.join(city['lines'])}")


def wait_for_entity(
    api: str, entity_id: str, attrs: list[str], within: float = 60, *, city: dict[str, Any]
) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{api}/entities/{entity_id}", headers=bearer(city))
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
        entity = wait_for_entity(
            city["api"], f"urn:ngsi-ld:{entity_type}:{device}", list(attrs), city=city
        )
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
    mqtt = wait_for_entity(
        city["api"], "urn:ngsi-ld:Device:weather-0001", ["supportedProtocol"], city=city
    )
    coap = wait_for_entity(
        city["api"], "urn:ngsi-ld:Device:flood-0001", ["supportedProtocol"], city=city
    )
    assert mqtt["supportedProtocol"]["value"] == ["mqtt"]
    assert coap["supportedProtocol"]["value"] == ["coap"]
    assert mqtt["deviceCategory"]["value"] == ["weather"]


@pytest.mark.slow
def test_the_api_wants_the_printed_token(city: dict[str, Any]) -> None:
    """An anonymous request gets 401 with WWW-Authenticate (RFC 6750 3); the curl line the city
    prints, run as printed, reads the readings with the reader token; the reader token cannot
    write (403 insufficient_scope)."""
    api = city["api"]
    wait_for_entity(api, "urn:ngsi-ld:WeatherObserved:weather-0001", ["temperature"], city=city)
    r = httpx.get(f"{api}/entities", params={"type": "WeatherObserved"})
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    curl = printed(city, r"(curl -g -H .*)$").group(1)
    assert "$(cat " in curl
    shown = subprocess.run(
        ["bash", "-c", curl + " --fail -s"], capture_output=True, text=True, check=True, timeout=20
    )  # fmt: skip
    assert "urn:ngsi-ld:WeatherObserved:weather-0001" in shown.stdout
    r = httpx.post(f"{api}/entities", json={"id": "urn:x:1", "type": "T"}, headers=bearer(city))
    assert r.status_code == 403, r.text
    assert "insufficient_scope" in r.headers["WWW-Authenticate"]


@pytest.mark.slow
def test_mqtt_is_tls_only_with_a_password_per_account(city: dict[str, Any]) -> None:
    """mosquitto_sub over TLS with the CA and the observer account the city printed reads
    readings; anonymous and a wrong password get CONNACK 5; plain MQTT gets no session."""
    port = str(city["ports"]["broker"])
    ca = city["security"] / "ca.pem"
    password = printed(city, r"-u observer -P '([^']+)'").group(1)
    passwords = json.loads((city["security"] / "mqtt-passwords.json").read_text())
    assert password == passwords["observer"]
    assert password != passwords["gateway"]

    def sub(*args: str) -> subprocess.CompletedProcess[str]:
        # -F %t: the topics only (CBOR payloads are not text)
        cmd = ["mosquitto_sub", "-h", "::1", "-p", port, "-t", "city/+/+/up/#", "-F", "%t"]
        return subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=30, check=False
        )

    seen = sub("--cafile", str(ca), "-u", "observer", "-P", password, "-C", "3", "-W", "20")
    assert seen.returncode == 0, seen.stderr
    topics = seen.stdout.splitlines()
    assert len(topics) == 3
    assert all(t.startswith("city/") and "/up/" in t for t in topics), topics
    assert sub("--cafile", str(ca), "-C", "1", "-W", "2").returncode == 5
    wrong = sub("--cafile", str(ca), "-u", "observer", "-P", "wrong", "-C", "1", "-W", "2")
    assert wrong.returncode == 5
    plain = sub("-u", "observer", "-P", password, "-C", "1", "-W", "2")
    assert plain.returncode not in (0, 27)  # no plain listener: no session, no timeout


@pytest.mark.slow
def test_only_the_platforms_notifications_switch_a_streetlight(city: dict[str, Any]) -> None:
    """The platform may notify the gateway's /notify (--allow-endpoint) and carries its token
    (receiverInfo, CIM 009 5.2.15): an admin's change of powerState becomes an MQTT command;
    a forged notification without the token gets 401 and WWW-Authenticate (RFC 6750 3)."""
    api, ca = city["api"], city["security"] / "ca.pem"
    device = "streetlight-0001"
    wait_for_entity(api, f"urn:ngsi-ld:Streetlight:{device}", ["powerState"], city=city)
    notify = f"http://[::1]:{city['ports']['http']}/notify"
    forged = {"data": [{"id": f"urn:ngsi-ld:Streetlight:{device}", "type": "Streetlight"}]}
    refused = httpx.post(notify, json=forged)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    password = json.loads((city["security"] / "mqtt-passwords.json").read_text())["observer-01"]
    watch = subprocess.Popen(
        ["mosquitto_sub", "-h", "::1", "-p", str(city["ports"]["broker"]), "--cafile", str(ca),
         "-u", "observer-01", "-P", password, "-t", f"city/streetlight/{device}/cmd",
         "-C", "1", "-W", "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Switch until the watcher has seen a command (it may subscribe after the first one).
        deadline = time.monotonic() + 30
        while watch.poll() is None and time.monotonic() < deadline:
            for value in ("on", "off"):  # one of them is a change, whatever the device reported
                r = httpx.patch(
                    f"{api}/entities/urn:ngsi-ld:Streetlight:{device}/attrs",
                    json={"powerState": {"type": "Property", "value": value}},
                    headers=bearer(city, "admin"),
                )
                assert r.status_code == 204, r.text
            time.sleep(0.5)
        out, _ = watch.communicate(timeout=40)
    finally:
        watch.kill()
    assert watch.returncode == 0, "no command reached the device's topic"
    assert out.strip()


@pytest.mark.slow
def test_debian_tools_can_talk_to_the_devices(city: dict[str, Any]) -> None:
    """libcoap's coap-client discovers a CoAP device's resources (/.well-known/core stays open)
    but a plain request for a reading, and a plain push to the gateway, get 4.01 Unauthorized:
    OSCORE (RFC 8613 8.2) protects the devices and the gateway's ingest."""
    wait_for_entity(
        city["api"], "urn:ngsi-ld:FloodMonitoring:flood-0001", ["currentLevel"], city=city
    )
    scenario_coap = _device_port(city, "flood-0001")
    wkc = subprocess.run(
        ["coap-client-notls", "-m", "get", f"coap://[::1]:{scenario_coap}/.well-known/core"],
        capture_output=True, text=True, check=True, timeout=20,
    )  # fmt: skip
    assert 'rt="r197.flood"' in wkc.stdout
    assert "</sensors>" in wkc.stdout
    plain = subprocess.run(
        ["coap-client-notls", "-m", "get", f"coap://[::1]:{scenario_coap}/sensors"],
        capture_output=True, text=True, check=False, timeout=20,
    )  # fmt: skip
    assert "4.01" in plain.stdout + plain.stderr
    push = f"coap://[::1]:{city['ports']['coap']}/up/parking-0001"
    forged = subprocess.run(
        ["coap-client-notls", "-m", "post", "-t", "50", "-e", '{"status": "free"}', push],
        capture_output=True, text=True, check=False, timeout=20,
    )  # fmt: skip
    assert "4.01" in forged.stdout + forged.stderr


def _device_port(city: dict[str, Any], device: str) -> int:
    r = httpx.get(f"{city['api']}/entities/urn:ngsi-ld:Device:{device}", headers=bearer(city))
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
    wait_for_entity(api, "urn:ngsi-ld:NoiseLevelObserved:noise-0001", ["LAeq"], city=city)
    headers = {"NGSILD-Tenant": "offline", "Link": LINK.format("http://[::1]:9/remote.jsonld")}
    headers |= bearer(city, "admin")  # Add @context (5.13.2) needs the admin scope
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
    wait_for_entity(city["api"], "urn:ngsi-ld:NoiseLevelObserved:noise-0001", ["LAeq"], city=city)
    proc: subprocess.Popen[str] = city["proc"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    city["reader"].join(timeout=10)
    text = "".join(city["lines"])
    assert proc.returncode == 0, text
    assert "broker    mosquitto at mqtts://[::1]:" in text, text
    assert "INSECURE" not in text, text
    assert "@contexts: shipped and added ones only" in text, text
    assert "city stopped" in text, text
    with pytest.raises(httpx.HTTPError):
        httpx.get(city["api"].rsplit("/ngsi-ld", 1)[0] + "/health", timeout=2)
