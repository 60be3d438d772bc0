# ruff: noqa: E501  # parametrized tables read best one case per line
"""Device encoders against RFC 8428's rules, and against the gateway's independent decoder."""

from __future__ import annotations

import json
import random
from typing import Any

import cbor2
import pytest

from devices import senml, vendor
from devices.device import SimDevice
from devices.models import KINDS, NUMERIC, SensorState, sample
from devices.scenario import Scenario, ScenarioError, load_scenario, shipped
from gateway import senml as gateway_senml
from gateway.normalizer import Inbound, normalize
from gateway.profiles import Profiles

T = 1_795_579_200.5


def device(kind: str, fmt: str = "senml-json", **group: Any) -> SimDevice:
    scenario = Scenario.model_validate(
        {"groups": [{"kind": kind, "count": 1, "format": fmt, **group}]}
    )
    return SimDevice(scenario.devices()[0])


def test_senml_pack_puts_base_fields_in_the_first_record() -> None:
    """bn and bt appear once, first; every record has exactly one value field (RFC 8428 4)."""
    records = senml.pack("weather-1", T, {"temperature": (21.5, "Cel"), "status": ("ok", None)})
    assert records[0]["bn"] == "urn:dev:r197:weather-1:"
    assert records[0]["bt"] == T
    assert all("bn" not in r for r in records[1:])
    for r in records:
        assert sum(k in r for k in ("v", "vs", "vb")) == 1


def test_cbor_uses_the_integer_labels_of_table_4() -> None:
    """CBOR SenML maps use -2 (bn), -3 (bt), 0 (n), 1 (u), 2 (v), 3 (vs)."""
    records = senml.pack("weather-1", T, {"temperature": (21.5, "Cel"), "status": ("ok", None)})
    decoded = cbor2.loads(senml.to_cbor(records))
    assert decoded[0] == {-2: "urn:dev:r197:weather-1:", -3: T, 0: "temperature", 1: "Cel", 2: 21.5}
    assert decoded[1] == {0: "status", 3: "ok"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["senml-json", "senml-cbor", "vendor-json", "vendor-csv"])
def test_the_gateway_understands_every_device_payload(kind: str, fmt: str) -> None:
    """Two independent implementations agree: every kind x format normalizes without rejection."""
    dev = device(kind, fmt)
    assert dev.read(T) is not None
    payload, _ = dev.encode()
    out = normalize(Inbound("mqtt", payload, fmt, T + 1, dev.device_id), Profiles())  # type: ignore[arg-type]
    assert out.device_id == dev.device_id
    assert out.readings == len(dev.current)


def test_the_same_reading_is_equal_in_every_format() -> None:
    """A weather reading encoded four ways gives the same platform attributes."""
    dev = device("weather")
    dev.read(1_795_579_200.0)  # whole seconds: CSV carries integer times
    results = []
    for fmt in ("senml-json", "senml-cbor", "vendor-json", "vendor-csv"):
        dev.counters.sent = 1  # no location in this comparison
        payload, _ = dev.encode(fmt)  # type: ignore[arg-type]
        entity = normalize(Inbound("coap", payload, fmt, T, dev.device_id), Profiles()).entities[0]  # type: ignore[arg-type]
        results.append({k: v for k, v in entity.items() if k != "location"})
    for other in results[1:]:
        for attr, prop in results[0].items():
            if isinstance(prop, dict) and "value" in prop and isinstance(prop["value"], float):
                assert other[attr]["value"] == pytest.approx(prop["value"], abs=1e-3), attr
                assert other[attr]["unitCode"] == prop["unitCode"]
                assert other[attr]["observedAt"] == prop["observedAt"]


def test_senml_json_is_valid_per_the_gateway_decoder() -> None:
    """The JSON form decodes and resolves with names under the device's base name."""
    dev = device("airquality")
    dev.read(T)
    payload, media = dev.encode()
    assert media == "application/senml+json"
    records = gateway_senml.resolve(gateway_senml.decode_json(payload), now=T)
    assert {r.name.rsplit(":", 1)[1] for r in records} >= {"pm25", "pm10", "no2", "o3"}
    assert all(r.unit == "kg/m3" for r in records if not r.name.endswith(("lat", "lon")))


def test_vendor_json_is_fahrenheit_and_local_time() -> None:
    """The vendor format really differs: °F and a +02:00 offset."""
    doc = json.loads(vendor.to_json("weather-1", 1_795_579_200, {"temperature": (20.0, "Cel")}))
    assert doc["tempF"] == 68.0
    assert doc["time"].endswith("+02:00")


@pytest.mark.parametrize("kind", KINDS)
def test_values_stay_plausible_over_a_day(kind: str) -> None:
    """Without faults, every value over 24 hours is within the sensor's physical range."""
    state = SensorState(kind, random.Random(1))  # type: ignore[arg-type]
    limits = {m.name: (m.low, m.high) for m in NUMERIC[kind]}
    for step in range(288):
        values = sample(state, T + step * 300, 300)
        assert values is not None
        for name, (value, _unit) in values.items():
            if name in limits:
                low, high = limits[name]
                assert low <= value <= high, (name, value)  # type: ignore[operator]


def test_faults_stuck_dropout_and_spike() -> None:
    """Faults switched on by the scenario show up in the readings."""
    stuck = SensorState("noise", random.Random(1), {"stuck": 1.0})
    first = sample(stuck, T, 10)
    assert sample(stuck, T + 10, 10) == first
    assert sample(SensorState("noise", random.Random(1), {"dropout": 1.0}), T, 10) is None
    spiky = sample(SensorState("noise", random.Random(1), {"spike": 1.0}), T, 10)
    assert spiky is not None
    assert spiky["LAeq"][0] > 110  # type: ignore[operator]


def test_shipped_scenarios_load() -> None:
    """workshop (24), city-1000 (1,000) and one file per domain are valid."""
    assert len(load_scenario(shipped("workshop")).devices()) == 24
    assert len(load_scenario(shipped("city-1000")).devices()) == 1000
    for kind in KINDS:
        devices = load_scenario(shipped(kind)).devices()
        assert {d.group.kind for d in devices} == {kind}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[[groups]]\nkind = "toaster"\ncount = 1\n', "groups.0.kind"),
        ('[[groups]]\nkind = "noise"\ncount = 0\n', "groups.0.count"),
        ('[[groups]]\nkind = "noise"\ncount = 1\nprotocol = "coap"\nformat = "vendor-csv"\n', "coap-push"),
        ("groups = [", "not valid TOML"),
        ('seed = 1\n', "groups"),
    ],
)  # fmt: skip
def test_bad_scenarios_say_where_and_why(tmp_path: Any, text: str, fragment: str) -> None:
    """A wrong scenario file is a ScenarioError naming the field."""
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert fragment in str(info.value)
