"""History rows as InfluxDB line protocol: the schema a Grafana user gets.

One point per stored Property instance (CIM 009 4.5.7: every instance the temporal API keeps):

    <type>[,dataset_id=<d>],entity_id=<id>[,tenant=<t>][,unit=<unitCode>] <attr>=<value> <ns>

The measurement is the entity type's short name (the last segment of its IRI) and the field the
attribute's, so a Flux query filters ``_measurement == "WeatherObserved"`` and
``_field == "temperature"``, and VictoriaMetrics names the series ``WeatherObserved_temperature``.
Numbers are written as floats (InfluxDB refuses an integer after a float in one field), booleans
as booleans, strings as strings; the time is observedAt, or modifiedAt without one.
Relationships, GeoProperties, LanguageProperties, structured values and deleted instances
(the NGSI-LD Null) are not time series and are left out.

Escaping follows the line protocol reference: measurement commas and spaces, tag keys and values
commas, equals signs and spaces, string fields quotes and backslashes
(tests/platform/test_influx_lines.py checks it against influxdb-client's own Point).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from city_platform.storage.base import HistoryRow
from city_platform.storage.series import micros

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\\": "\\\\"})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\\": "\\\\"})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})
NULL = "urn:ngsi-ld:null"


def short_name(iri: str) -> str:
    """The last segment of an IRI (``https://smartdatamodels.org/dataModel.X/temperature``
    -> ``temperature``); a term that is no IRI stays as it is."""
    cut = max(iri.rfind("/"), iri.rfind("#"))
    return iri[cut + 1 :] or iri if cut >= 0 else iri


# Cached: a city has a few types, attributes and units, and each device writes again and again;
# uncached, escaping them was two thirds of a line's cost.
@functools.lru_cache(maxsize=1024)
def _measurement(type_iri: str) -> str:
    return short_name(type_iri).translate(_MEASUREMENT)


@functools.lru_cache(maxsize=1024)
def _field_key(attr: str) -> str:
    return short_name(attr).translate(_TAG)


@functools.lru_cache(maxsize=65536)
def _tag(value: str) -> str:
    return value.translate(_TAG)


def _field_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        text = repr(number)
        return text[:-2] if text.endswith(".0") else text  # "21", as the client writes 21.0
    if isinstance(value, str):
        return None if value == NULL else '"' + value.translate(_STRING) + '"'
    return None  # structured values are no time series


def line(tenant: str, entity_type: str, row: HistoryRow) -> str | None:
    """The line of one history row, or None when the row is no Property with a plain value."""
    inst = row.instance
    if inst.get("type", "Property") != "Property":
        return None
    value = _field_value(inst.get("value"))
    if value is None:
        return None
    # Tags in key order, as InfluxDB wants them (and influxdb-client's Point writes them).
    tags = ",dataset_id=" + _tag(row.dataset_id) if row.dataset_id else ""
    tags += ",entity_id=" + _tag(row.entity_id)
    if tenant:
        tags += ",tenant=" + _tag(tenant)
    unit = inst.get("unitCode")
    if isinstance(unit, str) and unit:
        tags += ",unit=" + _tag(unit)
    when = row.observed_at or row.modified_at
    return f"{_measurement(entity_type)}{tags} {_field_key(row.attr)}={value} {micros(when) * 1000}"


def lines(tenant: str, types: dict[str, str], rows: Iterable[HistoryRow]) -> list[str]:
    """The lines of ``rows``; ``types`` maps entity ids to their (first) type IRI."""
    out = []
    for row in rows:
        entity_type = types.get(row.entity_id)
        if entity_type is not None:
            text = line(tenant, entity_type, row)
            if text is not None:
                out.append(text)
    return out
