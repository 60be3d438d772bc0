"""The reference stack's secured parts, started only when an R197-SEC case needs them.

The other groups keep their open reference parts (anonymous Mosquitto, a platform without
tokens); these run beside them with the city's credentials (testbed.credentials) in the
workdir: a TLS-only Mosquitto with one password per account and the device ACL, a platform
with ``--auth-key`` and ``--allow-endpoint``, and a gateway with tokens both ways.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import jwt

from city_platform.auth import ALGORITHM, ISSUER, issue_token
from conformance.security_pixit import Account, OscorePixit, SecurityPixit
from devices.oscore import RD_ID_CONTEXT, RD_SENDER_ID
from testbed.brokers import GATEWAY_USER, BrokerTls, MosquittoBroker, city_accounts
from testbed.credentials import CityCredentials
from testbed.parts import GatewayOptions, gateway_spec, platform_spec, rd_spec
from testbed.pki import write_private
from testbed.processes import HttpReady, ManagedProcess, ProcessSpec, free_port

# Two noise devices (the gateway's profile maps them to NoiseLevelObserved); the ACL ties each
# account to city/+/<its username>/... (testbed.brokers).
DEVICES = ("noise-sec0001", "noise-sec0002")
ACTUATOR = "streetlight-sec0001"  # a Streetlight (powerState) device: R197-SEC-32
BOUND_TENANT = "r197sec-city-a"
TOKEN_TTL_S = 3600.0


class SecureParts:
    def __init__(self, workdir: Path, start: Callable[[ProcessSpec], ManagedProcess]) -> None:
        self.workdir = workdir / "secure"
        self._start = start
        self.credentials = CityCredentials(self.workdir / "security")
        self._brokers: dict[str, tuple[MosquittoBroker, SecurityPixit]] = {}
        self._platform_pixit: SecurityPixit | None = None
        self._gateway_pixit: SecurityPixit | None = None
        # Chosen now: the platform's allow-list names the gateway's /notify before it starts.
        self.gateway_http_port = free_port()

    def _ensure(self) -> None:
        self.credentials.ensure(
            mqtt_users=[GATEWAY_USER, *DEVICES, ACTUATOR], oscore_devices=DEVICES
        )

    def broker(self, name: str = "mosquitto") -> SecurityPixit:
        """Mosquitto in secure mode (TLS only, >= 1.2, passwords, ACL, client id = username).

        Two instances: ``mosquitto`` for the broker cases, whose reader account is the
        gateway's, and ``gateway-mosquitto`` that the secure gateway uses: with the client id
        tied to the username, a probe logged in as "gateway" and the gateway would take each
        other's session over, back and forth."""
        if name not in self._brokers:
            self._ensure()
            users = city_accounts(self.credentials, [*DEVICES, ACTUATOR], observers=0)
            broker = MosquittoBroker(
                port=free_port(),
                users=users,
                tls=BrokerTls.of(self.credentials),
                workdir=self.workdir / name,
            )
            broker.start()
            self._brokers[name] = (
                broker,
                SecurityPixit(
                    url=broker.url,
                    ca_file=str(self.credentials.ca_file),
                    accounts=[Account(username=d, password=users[d]) for d in DEVICES],
                    reader=Account(username=GATEWAY_USER, password=users[GATEWAY_USER]),
                    actuator=Account(username=ACTUATOR, password=users[ACTUATOR]),
                ),
            )
        return self._brokers[name][1]

    def platform(self) -> SecurityPixit:
        """``testbed platform --auth-key --allow-endpoint`` and tokens signed with its key."""
        if self._platform_pixit is None:
            self._ensure()
            port = free_port()
            allowed = [f"http://[::1]:{self.gateway_http_port}/"]
            spec = platform_spec(
                port=port, verbose=0, name="secure-platform", remote_contexts=True,
                auth_key=self.credentials.jwt_key_file, allow_endpoints=allowed,
            )  # fmt: skip
            self._start(spec)
            key = self.credentials.jwt_key()

            def token(scope: str, tenants: list[str]) -> str:
                return issue_token(
                    key, subject=f"r197-sec-{scope}", scopes=[scope], tenants=tenants,
                    ttl=TOKEN_TTL_S,
                )  # fmt: skip

            self._platform_pixit = SecurityPixit(
                url=f"http://[::1]:{port}",
                tenant=BOUND_TENANT,
                tokens={
                    "read": token("read", ["*"]),
                    "write": token("write", ["*"]),
                    "admin": token("admin", ["*"]),
                    "tenant": token("write", [BOUND_TENANT]),
                    "expired": expired_token(key),
                },
            )
        return self._platform_pixit

    def gateway(self, broker: SecurityPixit, platform: SecurityPixit) -> SecurityPixit:
        """The gateway on a secure broker (TLS, the reader account) and the secure platform
        (a write token), its /notify requiring the city's notify token."""
        if self._gateway_pixit is None:
            assert broker.url is not None
            assert broker.reader is not None
            assert platform.url is not None
            token_file = self.workdir / "gateway-platform-token"
            write_private(token_file, platform.tokens["write"].encode())
            port, coap_port, rd_port = self.gateway_http_port, free_port("udp"), free_port("udp")
            self._start(
                replace(
                    rd_spec(port=rd_port, oscore=self.credentials.oscore_file), name="secure-rd"
                )
            )
            options = GatewayOptions(
                platform_url=platform.url, broker_url=broker.url, http_port=port,
                coap_port=coap_port, queue=self.workdir / "gateway-queue.db",
                broker_user=broker.reader.username, broker_password=broker.reader.password,
                broker_ca=Path(broker.ca_file) if broker.ca_file else None,
                platform_token_file=token_file,
                notify_token_file=self.credentials.notify_token_file,
                oscore_file=self.credentials.oscore_file,
            )  # fmt: skip
            self._start(
                gateway_spec(options, verbose=1, name="secure-gateway", wait_for_mqtt=False)
            )
            # Until its TLS session and subscription are in place (as ReferenceStack.gateway).
            subscribed = HttpReady(f"http://[::1]:{port}/health", require="mqtt")
            deadline = time.monotonic() + 30
            while not subscribed() and time.monotonic() < deadline:
                time.sleep(0.2)
            self._gateway_pixit = SecurityPixit(
                url=f"http://[::1]:{port}/notify",
                tokens={"notify": self.credentials.notify_token()},
                coap_url=f"coap://[::1]:{coap_port}",
                oscore=self._oscore(f"coap://[::1]:{rd_port}"),
            )
        return self._gateway_pixit

    def _oscore(self, rd_url: str) -> OscorePixit:
        """The first device's context material, as an IUT would give it (hex)."""
        keys = self.credentials.oscore(DEVICES)[DEVICES[0]]
        return OscorePixit(
            device=DEVICES[0], other_device=DEVICES[1], master_secret=keys.master_secret.hex(),
            master_salt=keys.master_salt.hex(), sender_id=keys.device_id.hex(),
            recipient_id=keys.gateway_id.hex(), rd_url=rd_url, rd_id_context=RD_ID_CONTEXT.hex(),
            rd_recipient_id=RD_SENDER_ID.hex(),
        )  # fmt: skip

    def close(self) -> None:
        for broker, _pixit in self._brokers.values():
            broker.close()


def expired_token(key: bytes) -> str:
    """A token signed with the right key whose exp (RFC 7519 4.1.4) passed an hour ago;
    issue_token refuses a negative ttl, so it is made here with the same claims."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {
        "iss": ISSUER, "sub": "r197-sec-expired", "scope": "read write", "tenants": ["*"],
        "iat": now - 7200, "exp": now - 3600,
    }  # fmt: skip
    return jwt.encode(claims, key, algorithm=ALGORITHM)
