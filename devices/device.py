"""One simulated device: its sensor state, and its payloads in the format it was given."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from devices import senml, vendor
from devices.models import SensorState, Value, sample
from devices.scenario import DeviceSpec, Format

MEDIA_TYPES: dict[Format, str] = {
    "senml-json": senml.JSON_TYPE,
    "senml-cbor": senml.CBOR_TYPE,
    "vendor-json": vendor.JSON_TYPE,
    "vendor-csv": vendor.CSV_TYPE,
}
# CoAP Content-Formats (RFC 7252 12.3, RFC 8428 12.3).
CONTENT_FORMATS: dict[Format, int] = {
    "senml-json": 110,
    "senml-cbor": 112,
    "vendor-json": 50,
    "vendor-csv": 0,
}
LOG_SIZE = 30  # readings kept for /log
LOCATION_EVERY = 30  # readings between two location reports (it does not move)


@dataclass
class Counters:
    sent: int = 0
    failed: int = 0
    dropped: int = 0  # dropout faults
    commands: int = 0


@dataclass
class SimDevice:
    spec: DeviceSpec
    state: SensorState = field(init=False)
    counters: Counters = field(default_factory=Counters)
    current: dict[str, Value] = field(default_factory=dict)
    current_time: float = 0.0
    history: list[tuple[float, dict[str, Value]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        faults = self.spec.group.faults.model_dump()
        custom = self.spec.kind_spec
        self.state = SensorState(
            self.spec.group.kind, random.Random(self.spec.seed), faults,
            numeric=custom.numeric() if custom is not None else None,
        )  # fmt: skip

    @property
    def device_id(self) -> str:
        return self.spec.device_id

    @property
    def kind(self) -> str:
        return self.spec.group.kind

    def read(self, t: float | None = None) -> dict[str, Value] | None:
        """Take a reading now (None on a dropout fault)."""
        t = round(time.time() if t is None else t, 3)
        interval = self.spec.group.interval
        if not self.history:
            # The device's stored log starts full (the last LOG_SIZE readings), so /log needs
            # Block2 from the start (RFC 7959).
            for k in range(LOG_SIZE, 0, -1):
                past = sample(self.state, t - k * interval, interval)
                if past is not None:
                    self.history.append((round(t - k * interval, 3), past))
        values = sample(self.state, t, interval)
        if values is None:
            self.counters.dropped += 1
            return None
        self.current, self.current_time = values, t
        self.history = [*self.history[-(LOG_SIZE - 1) :], (t, values)]
        return values

    def _with_location(self) -> bool:
        return self.counters.sent % LOCATION_EVERY == 0

    def encode(self, fmt: Format | None = None) -> tuple[bytes, str]:
        """The current reading as (payload, media type)."""
        fmt = fmt or self.spec.group.format
        values, t = self.current, self.current_time
        if fmt in ("senml-json", "senml-cbor"):
            extra: dict[str, Value] = {}
            if self._with_location():
                extra = {"lat": (self.spec.lat, "lat"), "lon": (self.spec.lon, "lon")}
            records = senml.pack(self.device_id, t, {**values, **extra})
            payload = senml.to_json(records) if fmt == "senml-json" else senml.to_cbor(records)
        elif fmt == "vendor-json":
            where = (self.spec.lon, self.spec.lat) if self._with_location() else None
            # A scenario-defined kind's vendor fields are its SenML names (profile vendor_field).
            own = self.spec.kind_spec is not None
            payload = vendor.to_json(self.device_id, t, values, where, senml_names=own)
        else:
            where = (self.spec.lon, self.spec.lat) if self._with_location() else None
            payload = vendor.to_csv(self.device_id, t, values, where)
        return payload, MEDIA_TYPES[fmt]

    def log_pack(self) -> bytes:
        """The last readings as one SenML JSON pack (the /log resource, needs Block2)."""
        records = []
        for t, values in self.history:
            records.extend(senml.pack(self.device_id, t, values))
        return senml.to_json(records)
