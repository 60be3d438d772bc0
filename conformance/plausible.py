"""Plausible ranges of a reading, per measurement and unit (R197-SENML-05).

A value in the wrong unit under a right label (71.6 for a temperature in Fahrenheit labelled
``Cel``, 101325 for a pressure in Pa labelled ``hPa``) passes every format check: only its
size gives it away.  Each :class:`Quantity` has the range nature or the measurement's
definition allows, with its source, and the units it may be reported in (as factors to the
range's unit).  A measurement is known by the last segment of its resolved SenML name
(RFC 8428 4.5.1), compared without case, ``_`` or ``-``; unknown names and units are not
checked (no range is better than a guessed one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    what: str
    names: frozenset[str]
    low: float
    high: float
    unit: str  # the unit of low and high
    source: str
    units: tuple[tuple[str, float, float], ...]  # (SenML unit, factor, offset) to ``unit``


def _q(what: str, names: str, low: float, high: float, unit: str, source: str,
       *units: tuple[str, float, float]) -> Quantity:  # fmt: skip
    return Quantity(what, frozenset(names.split()), low, high, unit, source, units)


# fmt: off
QUANTITIES: tuple[Quantity, ...] = (
    _q("air temperature", "temperature airtemperature temp", -89.2, 56.7, "Cel",
       "WMO World Weather and Climate Extremes Archive: -89.2 Cel Vostok 1983, 56.7 Cel "
       "Furnace Creek 1913", ("Cel", 1.0, 0.0), ("K", 1.0, -273.15)),
    _q("relative humidity", "humidity relativehumidity rh", 0.0, 100.0, "%RH",
       "definition: water vapour pressure over saturation pressure (WMO-No. 8, I.4)",
       ("%RH", 1.0, 0.0), ("%", 1.0, 0.0), ("/", 100.0, 0.0)),
    _q("atmospheric pressure", "pressure atmosphericpressure barometricpressure airpressure",
       300.0, 1085.0, "hPa",
       "WMO extremes: 1083.8 hPa highest sea-level pressure (Agata 1968); the lower bound is "
       "station pressure at 9 km (Everest summit about 337 hPa), not the 870 hPa sea-level "
       "low, so a mountain station passes", ("hPa", 1.0, 0.0), ("Pa", 0.01, 0.0)),
    _q("sound pressure level", "laeq lamax lafmax noise noiselevel soundlevel", 0.0, 140.0, "dB",
       "0 dB is the threshold of hearing; 140 dB the peak exposure limit of EU Directive "
       "2003/10/EC art. 3", ("dB", 1.0, 0.0)),
    _q("particulate matter", "pm1 pm25 pm2.5 pm10", 0.0, 1000.0, "ug/m3",
       "US EPA AQI breakpoints end at 500.4 (PM2.5) and 604 (PM10) ug/m3, doubled for dust "
       "storms and fires", ("ug/m3", 1.0, 0.0), ("kg/m3", 1e9, 0.0)),
    _q("wind speed", "windspeed windgust", 0.0, 113.2, "m/s",
       "WMO extremes: 113.2 m/s gust, Barrow Island 1996",
       ("m/s", 1.0, 0.0), ("km/h", 1 / 3.6, 0.0)),
    _q("fraction of full scale", "dimminglevel occupancy soilmoisture soilmoisturevwc", 0.0, 100.0,
       "%", "definition: a share of a whole (dimming, occupancy, volumetric water content)",
       ("%", 1.0, 0.0), ("/", 100.0, 0.0)),
)
# fmt: on
_NORMAL = re.compile(r"[_\-\s]")


def quantity_of(name: str, unit: str | None) -> tuple[Quantity, float, float] | None:
    """The quantity a resolved SenML ``name`` in ``unit`` measures and the unit's (factor,
    offset) to the quantity's unit; None when either is not in the table."""
    last = _NORMAL.sub("", re.split(r"[:/]", name)[-1]).lower()
    for quantity in QUANTITIES:
        if last in quantity.names:
            for u, factor, offset in quantity.units:
                if u == unit:
                    return quantity, factor, offset
    return None


def implausible(name: str, unit: str | None, value: float) -> str | None:
    """Why ``value`` is not a plausible ``name`` in ``unit``, or None (plausible or unknown)."""
    known = quantity_of(name, unit)
    if known is None:
        return None
    quantity, factor, offset = known
    scaled = value * factor + offset
    if quantity.low <= scaled <= quantity.high:
        return None
    shown = f"{value:g} {unit}"
    if unit != quantity.unit:
        shown += f" (= {scaled:g} {quantity.unit})"
    return (
        f"{name} = {shown} is outside the plausible {quantity.what} range "
        f"{quantity.low:g}..{quantity.high:g} {quantity.unit} ({quantity.source})"
    )
