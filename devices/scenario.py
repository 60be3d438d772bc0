"""Scenario files (TOML): how many devices of each kind, protocol, version, format and rate."""

from __future__ import annotations

import math
import random
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.models import KINDS, Numeric

Protocol = Literal["mqtt", "coap", "coap-push"]
Format = Literal["senml-json", "senml-cbor", "vendor-json", "vendor-csv"]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says where and why."""


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stuck: float = Field(default=0.0, ge=0, le=1)
    dropout: float = Field(default=0.0, ge=0, le=1)
    spike: float = Field(default=0.0, ge=0, le=1)


class MeasurementSpec(BaseModel):
    """One numeric measurement of a scenario-defined kind: devices.models.Numeric's curve
    (base + amplitude * cos(2π (hour - peak_hour) / 24) + drift_per_day * days + noise)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # the SenML name (RFC 8428 4.5.1)
    unit: str = Field(min_length=1, max_length=16)  # a SenML unit (RFC 8428 12.1, RFC 8798)
    base: float
    amplitude: float = 0.0
    noise: float = Field(default=0.0, ge=0)
    low: float
    high: float
    peak_hour: float = Field(default=14.0, ge=0, le=24)
    drift_per_day: float = 0.0
    decimals: int = Field(default=3, ge=0, le=12)  # 0 for counts

    @model_validator(mode="after")
    def _range(self) -> MeasurementSpec:
        if self.low > self.high:
            raise ValueError(f"{self.name}: low {self.low} is above high {self.high}")
        return self


class KindSpec(BaseModel):
    """A device kind the scenario defines (docs/labs/09-new-domain.md): numbers only, each with
    its daily curve. The gateway needs a profile of the same kind (GatewaySettings.profiles_dir)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,31}$")  # the <kind> of <kind>-<n> device ids
    measurement: list[MeasurementSpec] = Field(min_length=1, max_length=32)

    def numeric(self) -> tuple[Numeric, ...]:
        return tuple(
            Numeric(m.name, m.unit, m.base, m.amplitude, m.noise, m.low, m.high, m.peak_hour,
                    m.drift_per_day, m.decimals)
            for m in self.measurement
        )  # fmt: skip


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str  # a built-in kind (devices.models.KINDS) or one of the scenario's [[kinds]]
    count: int = Field(ge=1, le=100_000)
    protocol: Protocol = "mqtt"
    mqtt_version: Literal["3.1.1", "5"] = "5"
    qos: Literal[0, 1] = 1
    format: Format = "senml-json"
    interval: float = Field(default=10.0, gt=0, le=86400)
    faults: Faults = Field(default_factory=Faults)
    prefix: str | None = None  # device ids are <kind>-<prefix><n>

    @model_validator(mode="after")
    def _coap_formats(self) -> Group:
        if self.protocol == "coap" and self.format not in ("senml-json", "senml-cbor"):
            raise ValueError(
                "observed CoAP devices serve SenML (110/112); use coap-push for vendor formats"
            )
        return self


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "r197 city"
    lon: float = Field(default=6.1432, ge=-180, le=180)  # Geneva, where the ITU sits
    lat: float = Field(default=46.2044, ge=-90, le=90)
    radius_m: float = Field(default=3000.0, gt=0, le=100_000)


class Endpoints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    broker: str = "mqtt://[::1]:1883"
    rd: str = "coap://[::1]:5783"
    gateway: str = "coap://[::1]:5684"
    coap_host: str = "::1"
    coap_base_port: int = Field(default=56830, ge=1024, le=65000)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 197
    password: str = "device-secret"  # noqa: S105  # a lab default; every device's MQTT password unless the broker says otherwise
    city: City = Field(default_factory=City)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    kinds: list[KindSpec] = Field(default_factory=list)
    groups: list[Group] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_kinds(self) -> Scenario:
        defined = [k.name for k in self.kinds]
        for name in defined:
            if name in KINDS or defined.count(name) > 1:
                raise ValueError(f"kinds: {name!r} is built in or defined twice")
        for n, group in enumerate(self.groups):
            if group.kind not in KINDS and group.kind not in defined:
                raise ValueError(
                    f"groups.{n}.kind: no kind {group.kind!r}: use one of {', '.join(KINDS)} "
                    "or define it under [[kinds]]"
                )
        return self

    def devices(self) -> list[DeviceSpec]:
        """Every device with its id, place and settings, deterministic for the seed."""
        rng = random.Random(self.seed)
        defined = {k.name: k for k in self.kinds}
        out: list[DeviceSpec] = []
        counters: dict[str, int] = {}
        port = self.endpoints.coap_base_port
        for group in self.groups:
            for _ in range(group.count):
                n = counters.get(group.kind, 0) + 1
                counters[group.kind] = n
                distance = self.city.radius_m * math.sqrt(rng.random())
                angle = rng.random() * 2 * math.pi
                dlat = distance * math.cos(angle) / 111_320
                dlon = (
                    distance * math.sin(angle) / (111_320 * math.cos(math.radians(self.city.lat)))
                )
                coap_port = None
                if group.protocol == "coap":
                    coap_port = port
                    port += 1
                out.append(
                    DeviceSpec(
                        device_id=f"{group.kind}-{group.prefix or ''}{n:04d}",
                        group=group,
                        lon=round(self.city.lon + dlon, 6),
                        lat=round(self.city.lat + dlat, 6),
                        seed=rng.randrange(2**32),
                        coap_port=coap_port,
                        kind_spec=defined.get(group.kind),
                    )
                )
        return out


class DeviceSpec(BaseModel):
    device_id: str
    group: Group
    lon: float
    lat: float
    seed: int
    coap_port: int | None = None
    kind_spec: KindSpec | None = None  # a scenario-defined kind's measurements


def load_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise ScenarioError(f"{path}: {problems}") from None


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    # A model-level check names its field in the message (loc is empty).
    where = ".".join(str(p) for p in loc)
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def shipped(name: str) -> Path:
    """A scenario shipped with the package (``workshop``, ``city-1000``, ``weather`` ...)."""
    return Path(__file__).parent / "scenarios" / f"{name}.toml"
