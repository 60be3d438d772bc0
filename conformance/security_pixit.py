"""What an IUT tells the R197-SEC group about its secured endpoints (PIXIT, ``security:``).

A role's ``security`` block in the IUT file; every field is optional, and a case whose field is
missing is N/A with a reason naming it (never a fail)::

    roles:
      mqtt-broker:
        url: mqtt://[::1]:1883              # the open listener the other groups use
        security:
          url: mqtts://[::1]:8883           # the TLS listener (R197-SEC-01..09)
          ca_file: ca.pem                   # the CA that signed the broker's certificate
          accounts:                         # two device accounts, each its own password
            - {username: noise-a, password: "...", device_id: noise-a}
            - {username: noise-b, password: "..."}
          reader: {username: gateway, password: "..."}   # reads every reading, sends commands
          actuator: {username: streetlight-a, password: "..."}  # a Streetlight device account
          topics: {up: "city/noise/{device}/up/senml-json", cmd: "city/noise/{device}/cmd"}
      ngsild-platform:
        url: http://[::1]:8000
        security:
          url: http://[::1]:8001            # an instance that requires bearer tokens
          tokens: {read: "...", write: "...", tenant: "...", expired: "..."}
          tenant: city-a                    # the one tenant the "tenant" token is bound to
      gateway:
        url: coap://[::1]:5683
        security:
          url: http://[::1]:8081/notify     # its NGSI-LD notification endpoint
          tokens: {notify: "..."}           # optional: the token the platform sends it
          trap_port: 18883                  # where it connects for the client-side TLS cases
          trap_ca_cert: trap-ca.pem         # a CA it trusts there (the suite signs with its key)
          trap_ca_key: trap-ca.key
          coap_url: coap://[::1]:5684       # its CoAP ingest, OSCORE only (R197-SEC-40..45)
          oscore: {device: noise-a, other_device: noise-b, master_secret: 00ff.., master_salt: 0a..,
                   sender_id: "01", recipient_id: "00", rd_url: "coap://[::1]:5783",
                   rd_id_context: 72313937..., rd_recipient_id: "7264"}

The reference stack fills these blocks itself (conformance/stack.py, secure parts).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TOPICS = {
    "up": "city/noise/{device}/up/senml-json",
    "cmd": "city/noise/{device}/cmd",
    "actuator_cmd": "city/streetlight/{device}/cmd",  # the actuator account's commands
}


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str
    password: str
    device_id: str | None = None  # default: the username (the reference ties them, DESIGN 3)

    @property
    def device(self) -> str:
        return self.device_id or self.username


class OscorePixit(BaseModel):
    """One provisioned device's OSCORE context with the gateway (RFC 8613 3.2), hex strings,
    and the resource directory the gateway reads (R197-SEC-40..45)."""

    model_config = ConfigDict(extra="forbid")
    device: str  # its id: it pushes to <push path>/<device>
    other_device: str | None = None  # another provisioned device (R197-SEC-44)
    master_secret: str
    master_salt: str = ""
    sender_id: str  # the device's Sender ID
    recipient_id: str  # the gateway's Sender ID
    rd_url: str | None = None  # coap://... of an RD taking OSCORE registrations only
    rd_id_context: str | None = None  # the device's context with the RD: ID Context ...
    rd_recipient_id: str | None = None  # ... and the RD's Sender ID (same secret and salt)


class SecurityPixit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    ca_file: str | None = None
    accounts: list[Account] = Field(default_factory=list)
    reader: Account | None = None
    actuator: Account | None = None  # a streetlight (powerState) device account: R197-SEC-32
    topics: dict[str, str] = Field(default_factory=dict)
    tokens: dict[str, str] = Field(default_factory=dict)
    tenant: str | None = None
    trap_port: int | None = None
    trap_ca_cert: str | None = None
    trap_ca_key: str | None = None
    coap_url: str | None = None  # the gateway's CoAP ingest taking OSCORE pushes only
    oscore: OscorePixit | None = None

    def topic(self, kind: str, device: str) -> str:
        return self.topics.get(kind, DEFAULT_TOPICS[kind]).format(device=device)
