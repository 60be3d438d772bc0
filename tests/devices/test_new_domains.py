# ruff: noqa: E501  # the bad-scenario snippets read best one per line
"""Agriculture (soil), public health (indoor) and scenario-defined kinds, devices to entities.

Smart Data Models: AgriParcelRecord (dataModel.Agrifood) and IndoorEnvironmentObserved
(dataModel.Environment); a kind of the scenario's own ([[kinds]]) with a gateway profile from a
directory is the path docs/labs/09-new-domain.md walks.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from devices import vendor
from devices.device import SimDevice
from devices.models import SOIL_FULL, SOIL_REFILL, SensorState, sample
from devices.scenario import Scenario, ScenarioError, load_scenario
from gateway.errors import RejectedPayload
from gateway.normalizer import Inbound, normalize
from gateway.profiles import Profiles

MIDNIGHT = 1_795_564_800.0  # 2026-11-25T00:00:00Z


def day(kind: str, days: float, step: float = 600, seed: int = 1) -> list[tuple[float, Any]]:
    state = SensorState(kind, random.Random(seed))
    out = []
    for n in range(int(days * 86400 / step)):
        t = MIDNIGHT + n * step
        values = sample(state, t, step)
        assert values is not None
        out.append((((t - MIDNIGHT) % 86400) / 3600, values))
    return out


def test_soil_dries_by_day_and_is_irrigated_when_dry() -> None:
    """Moisture falls in the day (evapotranspiration), hardly at night, and refills below 0.16."""
    readings = day("soil", 20)
    moisture = [float(v["soilMoisture"][0]) for _, v in readings]
    assert all(0 <= m <= 0.6 for m in moisture)
    assert min(moisture) < SOIL_REFILL + 0.02  # it got dry ...
    refills = [b - a for a, b in itertools.pairwise(moisture) if b - a > 0.1]
    assert refills  # ... and was watered
    assert max(moisture) <= SOIL_FULL + 0.01
    by_day = [b - a for (h, _), a, b in zip(readings, moisture, moisture[1:], strict=False)
              if 11 <= h <= 15 and abs(b - a) < 0.05]  # fmt: skip
    by_night = [b - a for (h, _), a, b in zip(readings, moisture, moisture[1:], strict=False)
                if (h < 5 or h > 21) and abs(b - a) < 0.05]  # fmt: skip
    assert sum(by_day) / len(by_day) < sum(by_night) / len(by_night) - 1e-4
    assert {u for _, v in readings for _, u in v.values()} == {"/", "Cel"}


def test_indoor_co2_follows_the_people_in_the_room() -> None:
    """An empty room at night sits near outdoor CO2; a full one by day is far above it."""
    readings = day("indoor", 3)
    night = [v for h, v in readings if h < 5]
    noon = [v for h, v in readings if 11 <= h <= 14]
    assert all(v["peopleCount"][0] == 0 for v in night)
    assert min(v["peopleCount"][0] for v in noon) >= 10
    assert max(v["co2"][0] for v in night) < 500
    assert min(v["co2"][0] for v in noon) > 800
    assert {v["co2"][1] for _, v in readings} == {"ppm"}
    # The CO2 lags the people: at the first hour they arrive it is still below its noon level.
    assert sum(v["co2"][0] for h, v in readings if 7 <= h < 8) < sum(
        v["co2"][0] for h, v in readings if 12 <= h < 13
    )


@pytest.mark.parametrize(
    ("kind", "entity_type", "units"),
    [
        ("soil", "AgriParcelRecord", {"soilMoistureVwc": "C62", "soilTemperature": "CEL"}),
        ("indoor", "IndoorEnvironmentObserved",
         {"co2": "59", "peopleCount": "C62", "temperature": "CEL", "relativeHumidity": "C62"}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("fmt", ["senml-json", "senml-cbor", "vendor-json", "vendor-csv"])
def test_new_domains_become_their_smart_data_model(
    kind: str, entity_type: str, units: dict[str, str], fmt: str
) -> None:
    """Every format of both kinds gives the model's type, attribute names and unit codes."""
    dev = SimDevice(
        Scenario.model_validate({"groups": [{"kind": kind, "count": 1, "format": fmt}]}).devices()[
            0
        ]
    )
    dev.read(MIDNIGHT + 12 * 3600)
    payload, _ = dev.encode()
    entity = normalize(
        Inbound("mqtt", payload, fmt, MIDNIGHT + 12 * 3600 + 1, dev.device_id), Profiles()
    ).entities[0]  # type: ignore[arg-type]
    assert entity["type"] == entity_type
    assert {a: entity[a]["unitCode"] for a in units} == units
    if kind == "indoor":
        assert 0 < entity["relativeHumidity"]["value"] < 1  # %RH became a ratio
        assert entity["co2"]["value"] == pytest.approx(dev.current["co2"][0], abs=1e-6)
    else:
        assert entity["soilMoistureVwc"]["value"] == pytest.approx(
            dev.current["soilMoisture"][0], abs=1e-6
        )


CROWD = """
seed = 3
[[kinds]]
name = "crowd"
[[kinds.measurement]]
name = "peopleCount"
unit = "count"
base = 300
amplitude = 250
noise = 20
low = 0
high = 2000
peak_hour = 17
decimals = 0
[[kinds.measurement]]
name = "flow"
unit = "1/s"
base = 2
amplitude = 1.5
low = 0
high = 50

[[groups]]
kind = "crowd"
count = 2
protocol = "mqtt"
format = "{fmt}"
"""

CROWD_PROFILE = """
kind = "crowd"
entity_type = "CrowdFlowObserved"
[[measurement]]
senml = "peopleCount"
unit = "count"
attribute = "peopleCount"
unit_code = "C62"
vendor_field = "peopleCount"
min = 0
max = 5000
[[measurement]]
senml = "flow"
unit = "1/s"
attribute = "intensity"
unit_code = "C62"
vendor_field = "flow"
min = 0
max = 100
"""


@pytest.mark.parametrize("fmt", ["senml-json", "vendor-json", "vendor-csv"])
def test_a_scenario_defined_kind_reaches_its_profile_from_a_directory(
    tmp_path: Path, fmt: str
) -> None:
    """[[kinds]] in the scenario + <kind>.toml in a profiles directory, no package edit."""
    (tmp_path / "s.toml").write_text(CROWD.format(fmt=fmt))
    specs = load_scenario(tmp_path / "s.toml").devices()
    assert [s.device_id for s in specs] == ["crowd-0001", "crowd-0002"]
    profiles_dir = tmp_path / "profiles"
    profiles_dir.mkdir()
    (profiles_dir / "crowd.toml").write_text(CROWD_PROFILE)
    dev = SimDevice(specs[0])
    values = dev.read(MIDNIGHT + 17 * 3600)
    assert values is not None
    assert 0 <= float(values["peopleCount"][0]) <= 2000
    assert float(values["peopleCount"][0]).is_integer()  # decimals = 0
    assert values["flow"][1] == "1/s"
    payload, _ = dev.encode()
    with pytest.raises(RejectedPayload, match="no profile"):
        normalize(Inbound("mqtt", payload, fmt, MIDNIGHT + 17 * 3600, dev.device_id), Profiles())  # type: ignore[arg-type]
    entity = normalize(
        Inbound("mqtt", payload, fmt, MIDNIGHT + 17 * 3600, dev.device_id),  # type: ignore[arg-type]
        Profiles(profiles_dir),
    ).entities[0]
    assert entity["type"] == "CrowdFlowObserved"
    assert entity["peopleCount"]["value"] == pytest.approx(float(values["peopleCount"][0]))
    assert entity["intensity"]["unitCode"] == "C62"


def test_vendor_json_of_a_scenario_kind_uses_its_senml_names() -> None:
    """Even a name the built-in kinds know (peopleCount -> people) keeps its SenML name."""
    values: dict[str, Any] = {"flow": (2.5, "1/s"), "peopleCount": (12.0, "count")}
    doc = json.loads(vendor.to_json("crowd-1", MIDNIGHT, values, senml_names=True))
    assert (doc["flow"], doc["peopleCount"]) == (2.5, 12.0)
    assert json.loads(vendor.to_json("indoor-1", MIDNIGHT, values))["people"] == 12.0


@pytest.mark.parametrize(
    ("kinds", "group_kind", "fragment"),
    [
        ("", "crowd", "groups.0.kind: no kind 'crowd'"),
        (
            '[[kinds]]\nname = "noise"\n[[kinds.measurement]]\nname = "x"\nunit = "/"\nbase = 1\nlow = 0\nhigh = 2\n',
            "noise",
            "built in",
        ),
        (
            '[[kinds]]\nname = "crowd"\n[[kinds.measurement]]\nname = "x"\nunit = "/"\nbase = 1\nlow = 3\nhigh = 2\n',
            "crowd",
            "low 3.0 is above high 2.0",
        ),
        (
            '[[kinds]]\nname = "Crowd-1"\n[[kinds.measurement]]\nname = "x"\nunit = "/"\nbase = 1\nlow = 0\nhigh = 2\n',
            "crowd",
            "kinds.0.name",
        ),
        ('[[kinds]]\nname = "crowd"\n', "crowd", "kinds.0.measurement"),
    ],
)
def test_bad_scenario_kinds_say_where_and_why(
    tmp_path: Path, kinds: str, group_kind: str, fragment: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'{kinds}\n[[groups]]\nkind = "{group_kind}"\ncount = 1\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert fragment in str(info.value)
