"""Plausible sensor values for eight city domains: daily cycles, noise, drift and faults.

Values are in SenML units (docs/wire-formats.md).  Each device has its own seeded random
generator so a scenario replays identically.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal[
    "airquality", "weather", "noise", "traffic", "parking", "streetlight", "flood", "energy"
]
KINDS: tuple[Kind, ...] = (
    "airquality", "weather", "noise", "traffic", "parking", "streetlight", "flood", "energy"
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
}


@dataclass
class SensorState:
    """What a device remembers between readings."""

    kind: Kind
    rng: random.Random
    faults: dict[str, float] = field(default_factory=dict)
    last: dict[str, Value] = field(default_factory=dict)
    energy_j: float = 0.0
    power_state: str = "on"
    dimming: float = 80.0
    commanded: bool = False
    occupied: bool = False
    started: float = 0.0

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
    for m in NUMERIC[state.kind]:
        cycle = math.cos(2 * math.pi * (hour - m.peak_hour) / 24)
        raw = m.base + m.amplitude * cycle + m.drift_per_day * days + rng.gauss(0, m.noise)
        values[m.name] = (
            round(min(max(raw, m.low), m.high), 12 if m.unit == "kg/m3" else 3),
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
    if values and rng.random() < faults.get("spike", 0.0):
        name = next(iter(values))
        value, unit = values[name]
        if isinstance(value, float):
            values[name] = (value * 100 + 1000, unit)  # far out of range: the gateway rejects it
    state.last = dict(values)
    return values
