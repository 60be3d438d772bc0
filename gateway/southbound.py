"""Southbound: actuator changes made in the platform are relayed to the devices.

The gateway subscribes (NGSI-LD subscription, CIM 009 5.8) to the actuator attributes of its
profiles (streetlight ``powerState`` and ``illuminanceLevel``).  A notified value that differs
from the last value the gateway itself wrote is a command from a city application: it goes to
the device as MQTT ``city/<kind>/<device>/cmd`` (JSON, SenML names and units) or as CoAP PUTs
to ``/actuators/<name>``.
"""

from __future__ import annotations

import logging
from typing import Any

from city_platform.models import local_id
from gateway.normalizer import DEVICE_ID
from gateway.profiles import Profile, Profiles

log = logging.getLogger(__name__)


def actuator_subscription(
    profiles: Profiles, endpoint: str, sub_id: str, *, notify_token: str | None = None
) -> dict[str, Any]:
    """The subscription document for every actuator attribute of every profile.

    With ``notify_token`` the endpoint carries it as receiverInfo (CIM 009 5.2.15: key-value
    pairs the platform sends with each notification, over HTTP as headers), so the platform's
    notifications pass the gateway's /notify check and forged ones do not."""
    endpoint_doc: dict[str, Any] = {"uri": endpoint, "accept": "application/json"}
    if notify_token:
        endpoint_doc["receiverInfo"] = [{"key": "Authorization", "value": f"Bearer {notify_token}"}]
    entities = []
    watched: list[str] = []
    for kind in profiles.kinds():
        profile = profiles.get(kind)
        assert profile is not None
        attrs = [m.attribute for m in profile.measurements if m.actuator]
        if attrs:
            entities.append({"type": profile.entity_type})
            watched.extend(a for a in attrs if a not in watched)
    return {
        "id": sub_id,
        "type": "Subscription",
        "description": "r197 gateway: relay actuator changes to devices",
        "entities": entities,
        "watchedAttributes": watched,
        "notification": {
            "format": "keyValues",
            "attributes": watched,
            "endpoint": endpoint_doc,
        },
    }


class Actuators:
    """Remembers what the gateway wrote, and turns notifications into device commands."""

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles
        self._written: dict[tuple[str, str], Any] = {}
        self._refused = 0  # notified entities whose id names no device (logged now and then)

    def wrote(self, device_id: str, entity: dict[str, Any], actuators: frozenset[str]) -> None:
        """Record the actuator values of an entity update the gateway sends (loop guard)."""
        for name in actuators:
            prop = entity.get(name)
            if isinstance(prop, dict) and "value" in prop:
                self._written[(device_id, name)] = prop["value"]

    def _profile(self, entity_type: str) -> Profile | None:
        for kind in self.profiles.kinds():
            profile = self.profiles.get(kind)
            if profile is not None and profile.entity_type == entity_type:
                return profile
        return None

    def commands(self, entity: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
        """(kind, device id, command in SenML names/units) for a notified entity, if changed."""
        profile = self._profile(str(entity.get("type")))
        if profile is None:
            return None
        device_id = local_id(profile.entity_type, str(entity.get("id", "")))
        if device_id is None:
            return None
        if DEVICE_ID.fullmatch(device_id) is None:
            # The id becomes an MQTT topic level: '#', '+' or '/' there would be a PUBLISH to a
            # wildcard or another device's topic (MQTT-3.3.2-2: the broker drops the gateway).
            self._refused += 1
            if self._refused == 1 or self._refused % 1000 == 0:
                log.warning(
                    "southbound: no command for %r: not a device id (%d so far)",
                    device_id[:80],
                    self._refused,
                )
            return None
        command: dict[str, Any] = {}
        for m in profile.measurements:
            if not m.actuator or m.attribute not in entity:
                continue
            value = entity[m.attribute]
            if self._written.get((device_id, m.attribute)) == value:
                continue
            if m.is_text:
                if value in m.values:
                    command[m.senml] = value
            elif isinstance(value, int | float) and m.factor:
                command[m.senml] = round((value - m.offset) / m.factor, 6)
            self._written[(device_id, m.attribute)] = value
        return (profile.kind, device_id, command) if command else None
