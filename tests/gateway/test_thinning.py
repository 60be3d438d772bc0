# entity documents read best on one line
"""Unchanged static attributes are sent with the first reading, on change, and on refresh."""

from __future__ import annotations

from typing import Any

from gateway.thinning import Thinning


def reading(value: float, lon: float = 6.1) -> list[dict[str, Any]]:
    return [
        {
            "id": "urn:ngsi-ld:NoiseLevelObserved:noise-1",
            "type": "NoiseLevelObserved",
            "LAeq": {
                "type": "Property",
                "value": value,
                "observedAt": f"2026-01-01T00:00:{value:02.0f}Z",
            },
            "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:noise-1"},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [lon, 46.2]},
            },
        },
        {
            "id": "urn:ngsi-ld:Device:noise-1",
            "type": "Device",
            "supportedProtocol": {"type": "Property", "value": ["mqtt"]},
            "dateLastValueReported": {
                "type": "Property",
                "value": f"2026-01-01T00:00:{value:02.0f}Z",
            },
        },
    ]


def test_static_parts_are_sent_first_then_only_when_due() -> None:
    """Measurements always go; refDevice, location and Device only when new, changed or stale."""
    thin = Thinning(refresh=60)
    first = thin.thin(reading(1), now=0)
    assert [d["type"] for d in first] == ["NoiseLevelObserved", "Device"]
    assert "refDevice" in first[0]
    second = thin.thin(reading(2), now=10)
    assert [d["type"] for d in second] == ["NoiseLevelObserved"]
    assert set(second[0]) == {"id", "type", "LAeq"}
    moved = thin.thin(reading(3, lon=6.2), now=20)
    assert "location" in moved[0]
    stale = thin.thin(reading(4, lon=6.2), now=90)
    assert [d["type"] for d in stale] == ["NoiseLevelObserved", "Device"]
    assert stale[1]["dateLastValueReported"]["value"].endswith("04Z")
    switched = reading(5, lon=6.2)
    switched[1]["supportedProtocol"]["value"] = ["coap"]  # the device moved to another protocol
    assert [d["type"] for d in thin.thin(switched, now=95)] == ["NoiseLevelObserved", "Device"]
    assert [d["type"] for d in thin.thin(reading(6, lon=6.2), now=96)] == [
        "NoiseLevelObserved",
        "Device",
    ]  # and back
    assert [d["type"] for d in thin.thin(reading(7, lon=6.2), now=97)] == ["NoiseLevelObserved"]
