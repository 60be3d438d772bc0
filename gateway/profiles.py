"""Device profiles: which Smart Data Model and attribute mapping a kind of device gets.

Profiles are data files (``gateway/profile_data/<kind>.toml``); a device's kind is the prefix of its
id before the first ``-`` (docs/wire-formats.md), or named by its SenML base name
``urn:dev:r197:<device id>:``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from gateway.errors import RejectedPayload

_DEVICE_ID = re.compile(r"^[a-z][a-z0-9]*-[A-Za-z0-9_.-]{1,64}$")
_KIND = re.compile(r"^[a-z][a-z0-9]*$")  # the <kind> of <kind>-<n>
BASE_NAME = re.compile(r"^urn:dev:r197:([^:]+):$")
_DEVICES_KEPT = 100_000


@dataclass(frozen=True)
class Measurement:
    senml: str
    attribute: str
    unit: str | None = None  # the SenML unit devices must send
    unit_code: str | None = None  # UN/CEFACT code on the platform
    factor: float = 1.0
    offset: float = 0.0
    vendor_field: str | None = None
    vendor_factor: float = 1.0
    vendor_offset: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()  # allowed strings for text measurements
    actuator: bool = False

    @property
    def is_text(self) -> bool:
        return bool(self.values)


@dataclass(frozen=True)
class Profile:
    kind: str
    entity_type: str
    measurements: tuple[Measurement, ...]
    _senml: dict[str, Measurement] = field(init=False, repr=False, compare=False)
    _vendor: dict[str, Measurement] = field(init=False, repr=False, compare=False)
    actuators: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lookups per reading are dictionary hits, not scans (the ingest hot path).
        first: dict[str, Measurement] = {}
        vendor: dict[str, Measurement] = {}
        for m in self.measurements:
            first.setdefault(m.senml, m)
            if m.vendor_field is not None:
                vendor.setdefault(m.vendor_field, m)
        object.__setattr__(self, "_senml", first)
        object.__setattr__(self, "_vendor", vendor)
        attrs = frozenset(m.attribute for m in self.measurements if m.actuator)
        object.__setattr__(self, "actuators", attrs)

    def by_senml(self, name: str) -> Measurement | None:
        return self._senml.get(name)

    def by_vendor(self, name: str) -> Measurement | None:
        return self._vendor.get(name)


def _measurement(raw: dict[str, object]) -> Measurement:
    def num(key: str, default: float | None) -> float | None:
        value = raw.get(key, default)
        return None if value is None else float(value)  # type: ignore[arg-type]

    values = raw.get("values", [])
    return Measurement(
        senml=str(raw["senml"]),
        attribute=str(raw["attribute"]),
        unit=str(raw["unit"]) if "unit" in raw else None,
        unit_code=str(raw["unit_code"]) if "unit_code" in raw else None,
        factor=num("factor", 1.0) or 0.0,
        offset=num("offset", 0.0) or 0.0,
        vendor_field=str(raw["vendor_field"]) if "vendor_field" in raw else None,
        vendor_factor=num("vendor_factor", 1.0) or 0.0,
        vendor_offset=num("vendor_offset", 0.0) or 0.0,
        minimum=num("min", None),
        maximum=num("max", None),
        values=tuple(str(v) for v in values) if isinstance(values, list) else (),
        actuator=bool(raw.get("actuator", False)),
    )


class ProfileError(ValueError):
    """A profile file that cannot be used (a student's, from a profiles directory): the message
    names the file and what is wrong, so the gateway stops with it instead of a traceback."""


def parse_profile(text: str, where: str = "profile") -> Profile:
    try:
        doc = tomllib.loads(text)
        measurements = doc.get("measurement", [])
        if not isinstance(measurements, list) or not all(isinstance(m, dict) for m in measurements):
            raise ProfileError(f"{where}: measurement must be [[measurement]] tables")
        profile = Profile(
            kind=str(doc["kind"]),
            entity_type=str(doc["entity_type"]),
            measurements=tuple(_measurement(m) for m in measurements),
        )
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where}: not valid TOML: {exc}") from None
    except KeyError as exc:
        raise ProfileError(f"{where}: {exc.args[0]!r} is missing") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(f"{where}: {exc}") from None
    if not _KIND.match(profile.kind):
        # Device ids are <kind>-<n> (docs/wire-formats.md): no device could ever match.
        raise ProfileError(f"{where}: kind {profile.kind!r} is not lower-case letters and digits")
    return profile


class Profiles:
    """All known profiles by kind (the shipped ones, plus any from ``extra_dir``)."""

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._by_kind: dict[str, Profile] = {}
        self._of_device: dict[str, Profile] = {}
        for entry in resources.files("gateway.profile_data").iterdir():
            if entry.name.endswith(".toml"):
                profile = parse_profile(entry.read_text(encoding="utf-8"))
                self._by_kind[profile.kind] = profile
        if extra_dir is not None:
            if not extra_dir.is_dir():
                raise ProfileError(f"no profiles directory {extra_dir}")
            for path in sorted(extra_dir.glob("*.toml")):
                profile = parse_profile(path.read_text(encoding="utf-8"), str(path))
                self._by_kind[profile.kind] = profile

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def get(self, kind: str) -> Profile | None:
        return self._by_kind.get(kind)

    def for_device(self, device_id: str) -> Profile:
        """The profile of a device id ``<kind>-<n>`` (auto-provisioning, issue 3)."""
        known = self._of_device.get(device_id)  # checked once per device, not per reading
        if known is not None:
            return known
        if not _DEVICE_ID.match(device_id):
            raise RejectedPayload("unknown-device", f"{device_id!r} is not a <kind>-<n> device id")
        kind = device_id.split("-", 1)[0]
        profile = self._by_kind.get(kind)
        if profile is None:
            raise RejectedPayload("unknown-device", f"no profile for device kind {kind!r}")
        if len(self._of_device) >= _DEVICES_KEPT:
            self._of_device.clear()
        self._of_device[device_id] = profile
        return profile


def unprofiled(kinds: Iterable[str], extra_dir: Path | None = None) -> str | None:
    """Why devices of these kinds would all be refused (unknown-device), or None: a bad
    profiles directory, or a kind without a profile (checked before a city starts)."""
    try:
        known = Profiles(extra_dir).kinds()
    except ProfileError as exc:
        return str(exc)
    missing = sorted(set(kinds) - set(known))
    if not missing:
        return None
    return (
        f"no gateway profile for the device kind(s) {', '.join(missing)}: put <kind>.toml in "
        "a directory and give it with --profiles DIR (docs/labs/09-new-domain.md)"
    )


def device_from_base_name(name: str) -> str | None:
    """The device id in a SenML base name ``urn:dev:r197:<device id>:``."""
    match = BASE_NAME.match(name)
    return match.group(1) if match else None
