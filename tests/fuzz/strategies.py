"""Hypothesis strategies shared by the fuzz tests: hostile JSON-ish values and SenML packs."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from gateway.profiles import Profiles

_PROFILES = Profiles()
# SenML names and vendor fields per device kind, from the shipped profiles: a reading of the
# device's own kind gets past the "unknown-measurement" check into the range checks.
KIND_SENML = {k: [m.senml for m in _PROFILES.get(k).measurements] for k in _PROFILES.kinds()}  # type: ignore[union-attr]
KIND_VENDOR = {
    k: [m.vendor_field for m in _PROFILES.get(k).measurements if m.vendor_field]  # type: ignore[union-attr]
    for k in _PROFILES.kinds()
}

# Numbers a decoder must survive: huge, tiny, non-finite, integers beyond any double.
NUMBERS: st.SearchStrategy[Any] = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.integers(min_value=2**53, max_value=2**70),
    st.sampled_from([0, -0.0, 1e308, -1e308, 2**28, 2**28 - 1, 253_402_300_800, 10**400]),
)
SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.text(max_size=20), st.binary(max_size=8)
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """``good`` about four times in five, else ``bad``: inputs that get past the first checks.
    (Not ``i == 0``: hypothesis draws the bounds of a range far more often than the rest.)"""
    return st.integers(0, 9).flatmap(lambda i: bad if i in (3, 6) else good)


def sometimes(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (a middle value: bounds come up too often)."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


def json_values(scalars: st.SearchStrategy[Any] = SCALARS, leaves: int = 20) -> Any:
    """Nested lists and objects of ``scalars``."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=leaves,
    )


def nested(depth: int, leaf: Any, key: str | None = "a") -> Any:
    """``leaf`` inside ``depth`` levels of objects (``key``) or arrays (``key`` None)."""
    value = leaf
    for _ in range(depth):
        value = [value] if key is None else {key: value}
    return value


# SenML names (RFC 8428 4.5.1): mostly valid, the base names of our devices among them.
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:./_-"
SENML_NAMES: st.SearchStrategy[str] = st.one_of(
    st.text(alphabet=NAME_CHARS, max_size=12),
    st.sampled_from(
        ["urn:dev:r197:weather-1:", "urn:dev:r197:noise-7:", "temperature", "LAeq", "lat", "lon"]
    ),
    st.text(max_size=6),
)
MEASUREMENTS = [
    "temperature", "humidity", "pressure", "windSpeed", "LAeq", "pm25", "status",
    "occupancy", "powerState", "dimmingLevel", "waterLevel", "intensity", "lat", "lon", "x",
]  # fmt: skip
DEVICES = ["weather-1", "noise-7", "parking-3", "streetlight-2", "flood-1", "Weather-1", "x"]
UNITS = ["Cel", "%RH", "Pa", "m/s", "dB", "ug/m3", "m", "W", "Wh", "%", "/", None]


def _field_value(name: str) -> st.SearchStrategy[Any]:
    """The value of a SenML field: mostly of its type, now and then of any type."""
    right: dict[str, st.SearchStrategy[Any]] = {
        "bn": st.one_of(SENML_NAMES, st.sampled_from([f"urn:dev:r197:{d}:" for d in DEVICES])),
        "n": st.one_of(SENML_NAMES, st.sampled_from(MEASUREMENTS)),
        "bu": st.sampled_from(UNITS),
        "u": st.sampled_from(UNITS),
        "vs": st.one_of(st.text(max_size=10), st.sampled_from(["free", "occupied", "on"])),
        "vb": st.booleans(),
        "vd": st.one_of(st.binary(max_size=8), st.text(max_size=8)),
        "bver": st.sampled_from([10, 5, 11]),
    }
    if name in right:
        return st.one_of(right[name], SCALARS)
    if name in ("bt", "t"):  # times: absolute, relative (under 2**28) and out of range
        return st.one_of(st.floats(-1e9, 3e9), NUMBERS, SCALARS)
    return st.one_of(NUMBERS, SCALARS)


FIELDS = ["bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"]


@st.composite
def senml_records(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True))
    record = {name: draw(_field_value(name)) for name in names}
    if draw(st.integers(0, 9)) == 0:  # an unknown or must-understand field now and then
        record[draw(st.sampled_from(["x", "bx_", "foo_", ""]))] = draw(SCALARS)
    return record


SENML_PACKS: st.SearchStrategy[list[dict[str, Any]]] = st.lists(senml_records(), max_size=6)


@st.composite
def plausible_packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Packs of our devices' shape (base name and time, then readings) with a value or field
    off now and then: they get past the decoder into the normalizer's checks."""
    device = draw(st.sampled_from(DEVICES))
    first: dict[str, Any] = {"bn": f"urn:dev:r197:{device}:"}
    if draw(st.booleans()):
        first["bt"] = draw(st.one_of(st.floats(1.6e9, 2e9), st.floats(-100, 100), NUMBERS))
    records = [first]
    for _ in range(draw(st.integers(1, 4))):
        own = KIND_SENML.get(device.split("-")[0], MEASUREMENTS)
        record: dict[str, Any] = {
            "n": draw(mostly(st.sampled_from(own), st.sampled_from(MEASUREMENTS)))
        }
        unit = draw(mostly(st.none(), st.sampled_from(UNITS)))
        if unit is not None:
            record["u"] = unit
        kind = draw(mostly(st.just("v"), st.sampled_from(["vs", "vb", "s", "vd"])))
        record[kind] = draw(
            mostly(st.floats(0, 100), st.one_of(st.sampled_from(["free", "on"]), SCALARS))
        )
        if draw(st.integers(0, 3)) == 0:
            record["t"] = draw(st.one_of(st.floats(-60, 60), NUMBERS))
        records.append(record)
    if draw(st.booleans()):  # the base fields in the first reading, as devices send them
        records = [{**records[0], **records[1]}, *records[2:]]
    return records
