"""The load generator's payloads are what json.dumps and cbor2 make of a reading, byte for byte."""

from __future__ import annotations

import json
import random

from benchmarks.gateway import payload


def reference(fmt: str, device: str, t: float, value: float) -> bytes:
    from datetime import UTC, datetime  # noqa: PLC0415

    if fmt == "senml-json":
        return json.dumps(
            [{"bn": f"urn:dev:r197:{device}:", "bt": t, "n": "LAeq", "u": "dB", "v": value}]
        ).encode()
    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    return json.dumps({"dev": device, "time": stamp, "laeq_db": value}).encode()


def test_json_payloads_are_json_dumps_byte_for_byte() -> None:
    rng = random.Random(197)
    devices = ["noise-b0", "noise-b4999", 'quo"te', "back\\slash", "ümlaut", "tab\there"]
    values: list[float] = [0, 47, -3, 40.5, 1e-7, 1e22, 2**60, 0.1 + 0.2, float("nan")]
    values += [rng.uniform(-1e6, 1e6) for _ in range(200)] + [
        rng.randint(0, 100) for _ in range(50)
    ]
    for fmt in ("senml-json", "vendor-json"):
        for value in values:
            t = rng.uniform(1.7e9, 1.9e9)
            device = rng.choice(devices)
            assert payload(fmt, device, t, value) == reference(fmt, device, t, value), (
                fmt, device, t, value
            )  # fmt: skip
