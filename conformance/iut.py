"""The implementation under test: roles it fills (PIXIT) and what it supports (PICS).

Example (``conformance/examples/mosquitto.yaml``)::

    implementation: Mosquitto 2.0
    roles:
      mqtt-broker:
        url: mqtt://[::1]:1883
    pics:
      mqtt.v5: true
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conformance.security_pixit import SecurityPixit

Role = Literal["mqtt-broker", "mqtt-device", "coap-device", "gateway", "ngsild-platform"]

# What the reference stack supports; an IUT file overrides these for the roles it fills.
REFERENCE_PICS: dict[str, bool] = {
    "mqtt.v311": True,
    "mqtt.v5": True,
    "mqtt.qos2": True,
    "mqtt.retain": True,
    "mqtt.will": True,
    "mqtt.shared-subscriptions": True,
    "mqtt.persistent-sessions": True,
    "mqtt.message-expiry": True,
    "mqtt.user-properties": True,
    "coap.observe": True,
    "coap.block2": True,
    "coap.link-format": True,
    "coap.accept": True,
    "coap.etag": True,
    "coap.block1": True,
    "coap.actuator": True,
    # The actuator refuses a Content-Format it does not take (4.15); a resource that stores
    # any payload whatever its format is free to accept it (RFC 7252 5.10.3).
    "coap.format-check": True,
    "coap.multi-filter": True,
    "senml.json": True,
    "senml.cbor": True,
    "ngsild.temporal": True,
    "ngsild.subscriptions": True,
    "ngsild.geo": True,
    "ngsild.tenants": True,
    "ngsild.projection": True,  # issue 16 query
    "ngsild.post-query": True,
    "ngsild.type-expressions": True,
    "ngsild.scope": True,
    "ngsild.dataset-id-param": True,
    "ngsild.join": True,  # issue 16 representation
    "ngsild.lang": True,
    "ngsild.simplified-types": True,
    "ngsild.geojson": True,
    "ngsild.compact-iris": True,
    "ngsild.merge": True,  # issue 16 provision
    "ngsild.replace": True,
    "ngsild.purge": True,
    "ngsild.null": True,
    "ngsild.temporal-pagination": True,  # issue 16 temporal
    "ngsild.temporal-aggregation": True,
    "ngsild.temporal-post-query": True,
    "ngsild.temporal-deleted-at": True,
    "ngsild.periodic-subscriptions": True,  # issue 16 subscriptions
    "ngsild.triggers": True,
    "ngsild.show-changes": True,
    "ngsild.context-api": True,  # issue 16 contexts
    "ngsild.csource-registrations": True,  # issue 16 csources
    "ngsild.csource-subscriptions": True,
    "ngsild.forwarding": True,
    "ngsild.linear-regex": True,  # issue 16 robustness
    "ngsild.nesting-limit": True,
    "gateway.vendor-json": True,
    "gateway.coap-push": True,
    "ipv6.only": True,
    "sec.mqtt-tls": True,  # issue 17 security (R197-SEC)
    "sec.mqtt-auth": True,
    "sec.mqtt-acl": True,
    "sec.mqtt-takeover": True,
    "sec.tls-client": True,
    "sec.ngsild-auth": True,
    "sec.ngsild-scopes": True,
    "sec.ngsild-tenants": True,
    "sec.ngsild-ssrf": True,
    "sec.gateway-notify": True,
    "sec.gateway-uplink": True,
    "sec.coap-oscore": True,
    "sec.rd-oscore": True,
}


# PIXIT defaults of the reference stack (an IUT file's pixit overrides them).
REFERENCE_PIXIT: dict[str, Any] = {
    # Mosquitto 2.0.11 checks keep-alive timers coarsely: it closes a silent 2 s keep-alive
    # connection after 3 to 9 s, not within 1.5 x (MQTT-3.1.2-24). Documented in docs/interop.md.
    "mqtt.keepalive_tolerance_s": 10.0,
    "energy.max_bytes_per_reading": 600,
    # Instances per attribute a temporal answer holds before it is 206 Partial Content
    # (CIM 009 6.3.10 leaves the number to the implementation); city_platform.temporal.
    "ngsild.temporal_instance_limit": 1000,
    # Seconds one NGSI-LD answer may take in the robustness cases (R197-NGSILD-73..79) before
    # the IUT counts as stalled by the input (a backtracking regex, say).
    "ngsild.max_answer_s": 5.0,
    # URLs a platform with an endpoint allow-list must refuse as notification, registration
    # and @context targets (OWASP SSRF: cloud metadata, a private IPv6 address), R197-SEC-2x.
    "sec.ssrf_urls": ["http://169.254.169.254/latest/meta-data/", "http://[fd00::1]/"],
    # Seconds a client-side TLS case waits for the client's first connection attempt.
    "sec.client_wait_s": 20.0,
    # Seconds one case may run in all (its fixtures' setup aside) before it ends inconclusive,
    # whatever it waits on (conftest.py): twice the longest reference case (R197-RES-03, 17 s
    # on two busy cores) with room for sec.client_wait_s; an IUT may need more or less.
    "case.deadline_s": 60.0,
}


class RoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    username: str | None = None
    password: str | None = None
    tenant: str | None = None
    # Role-specific PIXIT, e.g. CoAP resource paths: {"observable": "/time", "large": "/..."}
    resources: dict[str, str] = Field(default_factory=dict)
    device_id: str | None = None
    # The R197-SEC group's PIXIT for this role: its secured endpoint and credentials.
    security: SecurityPixit | None = None


class IutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    implementation: str = "r197 reference stack"
    roles: dict[Role, RoleConfig] = Field(default_factory=dict)
    pics: dict[str, bool] = Field(default_factory=dict)
    pixit: dict[str, Any] = Field(default_factory=dict)

    def pixit_value(self, key: str) -> Any:
        return self.pixit.get(key, REFERENCE_PIXIT.get(key))

    def supports(self, item: str, roles: Iterable[str] | None = None) -> bool:
        """Whether ``item`` holds for a case exercising ``roles`` (None: any role).

        The file's PICS describe the IUT: a case that exercises only reference parts (a
        gateway case in a run whose IUT is a CoAP device, say) is judged on the reference
        stack's PICS, so an IUT's ``senml.cbor: false`` does not make it N/A.
        """
        if item in self.pics and (roles is None or any(r in self.roles for r in roles)):
            return self.pics[item]
        return REFERENCE_PICS.get(item, False)


class IutError(ValueError):
    pass


def load_iut(path: Path | None) -> IutConfig:
    if path is None:
        return IutConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise IutError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise IutError(f"{path}: not valid YAML: {exc}") from None
    try:
        config = IutConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise IutError(f"{path}: {problems}") from None
    # A misspelt item would silently take the reference's value and turn an N/A into a fail.
    unknown = sorted(set(config.pics) - set(REFERENCE_PICS))
    if unknown:
        raise IutError(
            f"{path}: unknown PICS item(s) {', '.join(unknown)}; "
            f"known items: {', '.join(sorted(REFERENCE_PICS))}"
        )
    return config
