"""Legacy vendor encodings (docs/wire-formats.md): a flat JSON object and a CSV line."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

JSON_TYPE = "application/vnd.r197.vendor+json"
CSV_TYPE = "text/csv"

# SenML name -> (vendor field, conversion from the SenML unit to the vendor's unit).
_FIELDS: dict[str, tuple[str, float, float]] = {
    "temperature": ("tempF", 9 / 5, 32.0),  # Cel -> °F
    "humidity": ("rh", 1.0, 0.0),
    "pressure": ("baro_hPa", 0.01, 0.0),
    "windSpeed": ("wind_kmh", 3.6, 0.0),
    "windDirection": ("wind_deg", 180 / math.pi, 0.0),
    "precipitation": ("rain_mm", 1000.0, 0.0),
    "pm25": ("pm25_ug", 1e9, 0.0),
    "pm10": ("pm10_ug", 1e9, 0.0),
    "no2": ("no2_ug", 1e9, 0.0),
    "o3": ("o3_ug", 1e9, 0.0),
    "LAeq": ("laeq_db", 1.0, 0.0),
    "intensity": ("veh_count", 1.0, 0.0),
    "averageSpeed": ("speed_kmh", 3.6, 0.0),
    "occupancy": ("occ_pct", 100.0, 0.0),
    "status": ("parking", 1.0, 0.0),
    "powerState": ("light", 1.0, 0.0),
    "dimmingLevel": ("dim_pct", 1.0, 0.0),
    "waterLevel": ("level_cm", 100.0, 0.0),
    "activePower": ("power_w", 1.0, 0.0),
    "energy": ("energy_wh", 1 / 3600, 0.0),
    "soilMoisture": ("vwc_pct", 100.0, 0.0),  # m3/m3 -> %
    "soilTemperature": ("soil_temp_c", 1.0, 0.0),
    "co2": ("co2_ppm", 1.0, 0.0),
    "peopleCount": ("people", 1.0, 0.0),
}
# The vendor's devices report local time with an offset (this one: UTC+2).
LOCAL = timezone(timedelta(hours=2))


def to_json(
    device_id: str,
    time: float,
    values: dict[str, tuple[float | str | bool, str | None]],
    location: tuple[float, float] | None = None,
    *,
    senml_names: bool = False,
) -> bytes:
    """``senml_names``: every field is named as in SenML, unconverted (a scenario-defined kind)."""
    doc: dict[str, object] = {
        "dev": device_id,
        "time": datetime.fromtimestamp(time, UTC)
        .astimezone(LOCAL)
        .isoformat(timespec="milliseconds"),
    }
    for name, (value, _unit) in values.items():
        own = (name, 1.0, 0.0)
        field, factor, offset = own if senml_names else _FIELDS.get(name, own)
        doc[field] = value if isinstance(value, str | bool) else round(value * factor + offset, 6)
    if location is not None:
        doc["lat"], doc["lon"] = location[1], location[0]
    return json.dumps(doc, separators=(",", ":")).encode()


def to_csv(
    device_id: str,
    time: float,
    values: dict[str, tuple[float | str | bool, str | None]],
    location: tuple[float, float] | None = None,
) -> bytes:
    """SenML names and units, units implied; integer epoch seconds; lat/lon now and then."""
    fields = ",".join(f"{name}={value}" for name, (value, _unit) in values.items())
    if location is not None:
        fields += f",lat={location[1]},lon={location[0]}"
    return f"{device_id},{int(time)},{fields}".encode()
