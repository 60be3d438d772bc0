"""The line-protocol schema (city_platform/influx/lines.py) and the outbox, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from influxdb_client.client.write.point import Point

from city_platform.influx.lines import line, lines, short_name
from city_platform.influx.outbox import Outbox, outbox_path
from city_platform.storage.base import HistoryRow

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def row(inst: dict[str, object], *, attr: str = "temperature", dataset: str | None = None,
        observed: str | None = "2026-01-02T03:04:05.123456Z") -> HistoryRow:  # fmt: skip
    return HistoryRow(
        "urn:ngsi-ld:WeatherObserved:w 1", DEFAULT + attr, dataset, observed,
        "2026-01-02T03:04:06.000000Z", "urn:i:1", inst,
    )  # fmt: skip


def test_a_property_is_the_same_line_as_influxdb_clients_point() -> None:
    got = line("city-a", DEFAULT + "WeatherObserved", row(
        {"type": "Property", "value": 21, "unitCode": "CEL"}, dataset="urn:ds,1"))  # fmt: skip
    expected = (
        Point("WeatherObserved")
        .tag("entity_id", "urn:ngsi-ld:WeatherObserved:w 1")
        .tag("tenant", "city-a")
        .tag("dataset_id", "urn:ds,1")
        .tag("unit", "CEL")
        .field("temperature", 21.0)
        .time(1767323045123456000)
        .to_line_protocol()
    )
    assert got == expected


@pytest.mark.parametrize(
    ("value", "field"),
    [(True, "true"), (False, "false"), ('say "hi" \\', r'"say \"hi\" \\"'), (0.1, "0.1")],
)
def test_field_values_escape_as_the_client_does(value: object, field: str) -> None:
    got = line("", "Thing", row({"type": "Property", "value": value}, observed=None))
    assert got == f"Thing,entity_id=urn:ngsi-ld:WeatherObserved:w\\ 1 temperature={field} " + str(
        1767323046 * 10**9
    )  # no observedAt: modifiedAt is the time; the default tenant has no tag
    assert (
        got
        == Point("Thing")
        .tag("entity_id", "urn:ngsi-ld:WeatherObserved:w 1")
        .field("temperature", value)
        .time(1767323046 * 10**9)
        .to_line_protocol()
    )


@pytest.mark.parametrize(
    "inst",
    [
        {"type": "Relationship", "object": "urn:x"},
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "Property", "value": {"a": 1}},
        {"type": "Property", "value": [1, 2]},
        {"type": "Property", "value": "urn:ngsi-ld:null"},  # a deleted instance
        {"type": "Property", "value": float("nan")},
        {"type": "LanguageProperty", "languageMap": {"en": "x"}},
    ],
)
def test_what_is_no_time_series_is_left_out(inst: dict[str, object]) -> None:
    assert line("", "Thing", row(inst)) is None


def test_rows_of_unknown_entities_are_left_out_and_names_are_short() -> None:
    types = {"urn:ngsi-ld:WeatherObserved:w 1": "https://smartdatamodels.org/x#Weather"}
    other = row({"type": "Property", "value": 2})._replace(entity_id="urn:other")
    out = lines("", types, [row({"type": "Property", "value": 1}), other])
    assert len(out) == 1
    assert out[0].startswith("Weather,")
    assert short_name("temperature") == "temperature"
    assert short_name("https://a/b/") == "https://a/b/"


def test_the_outbox_keeps_points_across_a_reopen(tmp_path: Path) -> None:
    path = outbox_path(str(tmp_path / "platform.db"), tmp_path / "data")
    assert path == str(tmp_path / "platform.db") + ".influx-outbox"
    box = Outbox(path)
    box.add([f"m f={i} {i}" for i in range(2)])  # one storage write of two points
    box.add(["m f=2 2"])
    box.add([f"m f={i} {i}" for i in range(3, 7)])
    box.add([])
    assert box.depth == 7
    last, first = box.take(3)  # whole writes, about as many points as asked for
    assert first == ["m f=0 0", "m f=1 1", "m f=2 2"]
    box.done(last)
    assert box.depth == 4
    box.close()
    again = Outbox(path)  # a restarted platform finds what was not sent
    assert again.depth == 4
    assert again.take(100)[1] == [f"m f={i} {i}" for i in range(3, 7)]
    again.close()
    assert outbox_path(":memory:", tmp_path) == ":memory:"
    url = "postgresql://[::1]/city"  # no file to put it beside: the data dir
    assert outbox_path(url, tmp_path / "data") == str(tmp_path / "data" / "influx-outbox.db")


def test_the_sink_storage_passes_every_storage_method_through() -> None:
    """A method of Storage the wrapper does not define would silently take the base class's
    default (e.g. ``lead``: every process leads) instead of the backend's."""
    from city_platform.influx.storage import InfluxSinkStorage  # noqa: PLC0415
    from city_platform.storage.base import Storage  # noqa: PLC0415

    public = {n for n, v in vars(Storage).items() if callable(v) and not n.startswith("_")}
    assert public, "Storage has methods"
    assert public - set(vars(InfluxSinkStorage)) == set()
