"""Errors of the gateway.

::

    GatewayError
    ├── RejectedPayload      a device sent something we cannot turn into readings
    ├── UplinkError          the platform refused a batch for good (not a transient outage)
    └── BrokerError          the MQTT broker refused us, dropped us or broke the protocol
        └── BrokerTlsError   the TLS handshake with the broker failed (certificate, version)

A :class:`RejectedPayload` renders itself as the protocol answer: a CoAP response code for
CoAP ingest and an MQTT v5 reason code (MQTT 5 section 2.4) for logs and metrics.
"""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "malformed",
    "oversized",
    "unsupported-format",
    "unknown-device",
    "invalid-device-id",
    "mismatched-device",
    "invalid-value",
    "unknown-measurement",
    "wrong-unit",
]

# CoAP response codes (RFC 7252 section 12.1.2) per reason, as (class, detail).
_COAP = {
    "malformed": (4, 0),
    "oversized": (4, 13),
    "unsupported-format": (4, 15),
    "unknown-device": (4, 4),
    "invalid-device-id": (4, 0),
    "mismatched-device": (4, 3),
    "invalid-value": (4, 0),
    "unknown-measurement": (4, 0),
    "wrong-unit": (4, 0),
}
# MQTT v5 reason codes (MQTT 5 section 2.4): 0x99 payload format invalid, 0x95 packet too
# large, 0x87 not authorized, 0x90 topic name invalid.
_MQTT = {
    "malformed": 0x99,
    "oversized": 0x95,
    "unsupported-format": 0x99,
    "unknown-device": 0x90,
    "invalid-device-id": 0x90,
    "mismatched-device": 0x87,
    "invalid-value": 0x99,
    "unknown-measurement": 0x99,
    "wrong-unit": 0x99,
}


class GatewayError(Exception):
    """Root of the gateway's exceptions."""


class RejectedPayload(GatewayError):
    """A payload rejected with a reason (counted per reason and device)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail

    @property
    def coap_code(self) -> tuple[int, int]:
        return _COAP[self.reason]

    @property
    def mqtt_reason_code(self) -> int:
        return _MQTT[self.reason]


class UplinkError(GatewayError):
    """The platform refused a batch permanently."""


class BrokerError(GatewayError):
    """The MQTT broker refused the connection or a request, or the connection is gone."""

    def __init__(self, detail: str, reason: int | None = None) -> None:
        super().__init__(detail if reason is None else f"{detail} (reason code 0x{reason:02x})")
        self.reason = reason


class BrokerTlsError(BrokerError):
    """The TLS handshake failed: the broker is there but is not the one we trust."""
