"""The devices' own SenML encoder (RFC 8428): JSON and CBOR with integer labels.

Deliberately independent of the gateway's decoder (DESIGN 2): it stands for device firmware.
"""

from __future__ import annotations

import json
from typing import Any

import cbor2

JSON_TYPE = "application/senml+json"
CBOR_TYPE = "application/senml+cbor"
# RFC 8428 Table 4.
_CBOR = {"bn": -2, "bt": -3, "bu": -4, "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "t": 6}


def pack(
    device_id: str, time: float, values: dict[str, tuple[float | str | bool, str | None]]
) -> list[dict[str, Any]]:
    """One reading set as a pack: base name and base time in the first record."""
    records: list[dict[str, Any]] = []
    for name, (value, unit) in values.items():
        record: dict[str, Any] = {"n": name}
        if unit:
            record["u"] = unit
        if isinstance(value, bool):
            record["vb"] = value
        elif isinstance(value, str):
            record["vs"] = value
        else:
            record["v"] = value
        records.append(record)
    if records:
        records[0] = {"bn": f"urn:dev:r197:{device_id}:", "bt": time, **records[0]}
    return records


def to_json(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(records, separators=(",", ":")).encode()


def to_cbor(records: list[dict[str, Any]]) -> bytes:
    return cbor2.dumps([{_CBOR[k]: v for k, v in r.items()} for r in records])
