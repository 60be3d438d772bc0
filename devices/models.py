"""Plausible sensor values for ten city domains: daily cycles, noise, drift and faults.

Values are in SenML units (docs/wire-formats.md).  Each device has its own seeded random
generator so a scenario replays identically.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

# soil: agriculture (AgriParcelRecord), indoor: public health (IndoorEnvironmentObserved).
Kind = Literal[
    "airquality", "weather", "noise", "traffic", "parking", "streetlight", "flood", "energy",
    "soil", "indoor",
]  # fmt: skip
KINDS: tuple[Kind, ...] = (
    "airquality", "weather", "noise", "traffic", "parking", "streetlight", "flood", "energy",
    "soil", "indoor",
)  # fmt: skip
Value = tuple[float | str | bool, str | None]


@dataclass(frozen=True)
class Numeric:
    """base + amplitude * cos(2π (hour - peak) / 24) + drift * days + noise, clamped."""

    name: str
    unit: str
    base: float
    amplitude: float
    noise: float
    low: float
    high: float
    peak_hour: float = 14.0
    drift_per_day: float = 0.0
    decimals: int = 3  # digits kept (kg/m3 values keep 12)


NUMERIC: dict[str, tuple[Numeric, ...]] = {
    "airquality": (
        Numeric("pm25", "kg/m3", 15e-9, 8e-9, 3e-9, 0, 500e-9, 8.5),
        Numeric("pm10", "kg/m3", 25e-9, 12e-9, 5e-9, 0, 1000e-9, 8.5),
        Numeric("no2", "kg/m3", 35e-9, 20e-9, 6e-9, 0, 1000e-9, 8.0),
        Numeric("o3", "kg/m3", 60e-9, 30e-9, 8e-9, 0, 1000e-9, 15.0),
    ),
    "weather": (
        Numeric("temperature", "Cel", 12.0, 6.0, 0.3, -40, 50, 15.0, 0.02),
        Numeric("humidity", "%RH", 65.0, -15.0, 2.0, 5, 100, 15.0),
        Numeric("pressure", "Pa", 101300.0, 150.0, 20.0, 95000, 105000, 10.0),
        Numeric("windSpeed", "m/s", 3.0, 1.5, 0.8, 0, 40, 15.0),
        Numeric("windDirection", "rad", 3.5, 0.6, 0.3, 0, 2 * math.pi, 12.0),
        Numeric("precipitation", "m", 0.0002, 0.0002, 0.0001, 0, 0.05, 17.0),
    ),
    "noise": (Numeric("LAeq", "dB", 55.0, 12.0, 3.0, 25, 110, 17.0),),
    "traffic": (
        Numeric("intensity", "count", 120.0, 100.0, 15.0, 0, 2000, 17.5),
        Numeric("averageSpeed", "m/s", 11.0, -3.0, 1.0, 0, 40, 17.5),
        Numeric("occupancy", "/", 0.3, 0.2, 0.05, 0, 1, 17.5),
    ),
    "flood": (Numeric("waterLevel", "m", 1.2, 0.1, 0.02, 0, 10, 4.0, 0.01),),
    "energy": (Numeric("activePower", "W", 900.0, 600.0, 50.0, 0, 20000, 19.0),),
    "parking": (),
    "streetlight": (),
    # Soil warms later than the air (peak late afternoon) and swings less.
    "soil": (Numeric("soilTemperature", "Cel", 15.0, 3.0, 0.1, -20, 60, 17.0),),
    "indoor": (),  # every value follows the room's occupancy (_indoor)
}
# Soil moisture (volumetric water content, m3/m3): it dries by evapotranspiration, mostly in
# the day, and jumps back when irrigated (below REFILL) or, now and then, when it rains.
SOIL_FULL, SOIL_REFILL, SOIL_DRY_PER_DAY = 0.38, 0.16, 0.06
OUTDOOR_CO2_PPM, CO2_PER_PERSON_PPM, ROOM_SECONDS = 420.0, 30.0, 1800.0


@dataclass
class SensorState:
    """What a device remembers between readings."""

    kind: str  # a Kind, or a kind the scenario defines (devices.scenario.KindSpec)
    rng: random.Random
    faults: dict[str, float] = field(default_factory=dict)
    last: dict[str, Value] = field(default_factory=dict)
    energy_j: float = 0.0
    power_state: str = "on"
    dimming: float = 80.0
    commanded: bool = False
    occupied: bool = False
    started: float = 0.0
    moisture: float = 0.0  # soil: m3/m3 (0 = not started)
    co2: float = 0.0  # indoor: ppm (0 = not started)
    previous: float = 0.0  # the time of the last reading (rates per elapsed second)
    capacity: int = 0  # indoor: the room's seats (drawn at the first reading)
    numeric: tuple[Numeric, ...] | None = None  # a scenario-defined kind's measurements

    def apply_command(self, command: dict[str, object]) -> None:
        """Actuator commands (SenML names): streetlight powerState / dimmingLevel."""
        state = command.get("powerState")
        if state in ("on", "off"):
            self.power_state = str(state)
            self.commanded = True
        level = command.get("dimmingLevel")
        if isinstance(level, int | float) and not isinstance(level, bool) and 0 <= level <= 100:
            self.dimming = float(level)
            self.commanded = True


def _hour(t: float) -> float:
    return (t % 86400) / 3600.0


def _soil(state: SensorState, hour: float, elapsed: float) -> float:
    """Volumetric water content: drying by day, irrigation below SOIL_REFILL, rain now and then."""
    rng = state.rng
    if state.moisture == 0.0:
        state.moisture = rng.uniform(SOIL_REFILL + 0.04, SOIL_FULL)
    sun = max(0.0, math.cos(2 * math.pi * (hour - 13) / 24))  # evapotranspiration follows the sun
    state.moisture -= SOIL_DRY_PER_DAY * 2 * sun * elapsed / 86400
    if state.moisture < SOIL_REFILL or rng.random() < 0.0005:
        state.moisture = SOIL_FULL - rng.uniform(0.0, 0.03)  # irrigation (or a shower) refills it
    return round(min(max(state.moisture + rng.gauss(0, 0.002), 0.0), 0.6), 4)


def _indoor(state: SensorState, hour: float, elapsed: float) -> dict[str, Value]:
    """A classroom or clinic waiting room: people by day, CO2 rising towards what they exhale.

    CO2 approaches OUTDOOR + CO2_PER_PERSON * people with the room's air-change time constant
    (ROOM_SECONDS), so it lags the people as a ventilated room does."""
    rng = state.rng
    if state.capacity == 0:
        state.capacity = rng.randint(20, 40)
    busy = max(0.0, math.cos(2 * math.pi * (hour - 12.5) / 16)) if 6 <= hour <= 19 else 0.0
    noise = rng.gauss(0, 1.5) if busy > 0 else 0.0  # closed at night: nobody
    people = max(0, min(round(state.capacity * busy + noise), 2 * state.capacity))
    target = OUTDOOR_CO2_PPM + CO2_PER_PERSON_PPM * people
    if state.co2 == 0.0:
        state.co2 = target  # the first reading finds the room settled
    state.co2 += (target - state.co2) * (1 - math.exp(-elapsed / ROOM_SECONDS))
    return {
        "co2": (round(min(max(state.co2 + rng.gauss(0, 5), 350.0), 5000.0), 1), "ppm"),
        "peopleCount": (float(people), "count"),
        "temperature": (round(20.5 + 0.06 * people + rng.gauss(0, 0.1), 2), "Cel"),
        "humidity": (round(min(38.0 + 0.4 * people + rng.gauss(0, 1.0), 95.0), 1), "%RH"),
    }


def sample(state: SensorState, t: float, interval: float) -> dict[str, Value] | None:
    """One reading set at time ``t`` (None when a dropout fault hits)."""
    rng = state.rng
    faults = state.faults
    if rng.random() < faults.get("dropout", 0.0):
        return None
    if state.last and rng.random() < faults.get("stuck", 0.0):
        return dict(state.last)
    if state.started == 0.0:
        state.started = t
    hour = _hour(t)
    days = (t - state.started) / 86400
    values: dict[str, Value] = {}
    elapsed = min(max(t - state.previous, 0.0), 86400.0) if state.previous else 0.0
    state.previous = t
    numeric = state.numeric if state.numeric is not None else NUMERIC.get(state.kind, ())
    for m in numeric:
        cycle = math.cos(2 * math.pi * (hour - m.peak_hour) / 24)
        raw = m.base + m.amplitude * cycle + m.drift_per_day * days + rng.gauss(0, m.noise)
        values[m.name] = (
            round(min(max(raw, m.low), m.high), 12 if m.unit == "kg/m3" else m.decimals),
            m.unit,
        )
    if state.kind == "energy":
        power = float(values["activePower"][0])
        state.energy_j += power * interval
        values["energy"] = (round(state.energy_j, 1), "J")
    elif state.kind == "parking":
        busy = 0.25 + 0.6 * max(0.0, math.cos(2 * math.pi * (hour - 13) / 24))
        if rng.random() < 0.2:
            state.occupied = rng.random() < busy
        values["status"] = ("occupied" if state.occupied else "free", None)
    elif state.kind == "streetlight":
        if not state.commanded:
            state.power_state = "on" if hour < 7 or hour >= 18 else "off"
        values["powerState"] = (state.power_state, None)
        values["dimmingLevel"] = (state.dimming if state.power_state == "on" else 0.0, "%")
    elif state.kind == "soil":
        values["soilMoisture"] = (_soil(state, hour, elapsed), "/")
    elif state.kind == "indoor":
        values.update(_indoor(state, hour, elapsed))
    if values and rng.random() < faults.get("spike", 0.0):
        name = next(iter(values))
        value, unit = values[name]
        if isinstance(value, float):
            values[name] = (value * 100 + 1000, unit)  # far out of range: the gateway rejects it
    state.last = dict(values)
    return values
