"""Fixtures and probes of the R197-SEC group: the secured roles and what to say about them.

A secured role comes from the IUT's ``security`` block (conformance/security_pixit.py) or,
for a role the IUT does not fill, from the reference stack's secure parts
(conformance/stack_secure.py).  A role the IUT fills without a ``security`` block, or a block
without the field a case needs, makes that case N/A with the missing field in its reason.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conformance.iut import IutConfig, RoleConfig
from conformance.model import Inconclusive
from conformance.mqtt_client import ProbeClient
from conformance.security_pixit import Account, SecurityPixit
from conformance.stack import ReferenceStack
from gateway.transports import mqtt_wire as wire

HERE = Path(__file__).resolve().parent


def not_applicable(request: pytest.FixtureRequest, reason: str) -> None:
    """End the case as N/A (the verdict, not a skip the report would not show)."""
    request.node.r197_na = reason
    pytest.skip(f"N/A: {reason}")


def _secured(
    request: pytest.FixtureRequest, iut: IutConfig, role: str, reference: SecurityPixit | None
) -> SecurityPixit:
    config: RoleConfig | None = iut.roles.get(role)  # type: ignore[call-overload]
    if config is None:
        assert reference is not None
        return reference
    if config.security is None:
        not_applicable(request, f"the IUT's {role} role has no security block (PIXIT)")
    assert config.security is not None
    return config.security


@pytest.fixture
def secure_broker(
    request: pytest.FixtureRequest, iut: IutConfig, stack: ReferenceStack
) -> SecurityPixit:
    ref = None if "mqtt-broker" in iut.roles else stack.secure.broker()
    return _secured(request, iut, "mqtt-broker", ref)


@pytest.fixture
def secure_platform(
    request: pytest.FixtureRequest, iut: IutConfig, stack: ReferenceStack
) -> SecurityPixit:
    ref = None if "ngsild-platform" in iut.roles else stack.secure.platform()
    return _secured(request, iut, "ngsild-platform", ref)


@pytest.fixture
def uplink_broker(
    request: pytest.FixtureRequest, iut: IutConfig, stack: ReferenceStack
) -> SecurityPixit:
    """The secured broker a gateway case publishes on: the IUT's, or the reference instance
    the reference gateway uses (not the broker cases' one, see SecureParts.broker)."""
    ref = None if "mqtt-broker" in iut.roles else stack.secure.broker("gateway-mosquitto")
    return _secured(request, iut, "mqtt-broker", ref)


@pytest.fixture
def secure_gateway(
    request: pytest.FixtureRequest,
    iut: IutConfig,
    stack: ReferenceStack,
    uplink_broker: SecurityPixit,
    secure_platform: SecurityPixit,
) -> SecurityPixit:
    """The IUT's gateway, or the reference one connected to ``uplink_broker`` with its reader
    account (which no other client may use meanwhile) and to ``secure_platform``."""
    if "gateway" in iut.roles:
        return _secured(request, iut, "gateway", None)
    need(request, uplink_broker, "url", "reader")
    need(request, secure_platform, "url", "tokens.write")
    return stack.secure.gateway(uplink_broker, secure_platform)


def need(request: pytest.FixtureRequest, pixit: SecurityPixit, *fields: str) -> None:
    """N/A unless the PIXIT gives every field (``tokens.read`` names a token)."""
    missing = []
    for name in fields:
        head, _, key = name.partition(".")
        value = getattr(pixit, head)
        if not value or (key and key not in value):
            missing.append(name)
    if missing:
        not_applicable(request, f"PIXIT security.{', security.'.join(missing)} not given")


def ca_path(pixit: SecurityPixit) -> Path:
    assert pixit.ca_file is not None
    path = Path(pixit.ca_file)
    return path if path.is_absolute() else Path.cwd() / path


def client_context(ca_file: Path) -> ssl.SSLContext:
    """What a careful client does: trust the given CA only, check the host name, TLS >= 1.2."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def host_port(url: str, default: int = 8883) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "::1", parts.port or default


def tls_connect(pixit: SecurityPixit, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    """A TLS connection to the secured listener (raises ssl.SSLError if the handshake fails)."""
    assert pixit.url is not None
    host, port = host_port(pixit.url)
    raw = socket.create_connection((host, port), timeout=5)
    try:
        return (context or client_context(ca_path(pixit))).wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def read_packet(sock: socket.socket, timeout: float = 5) -> bytes:
    """One whole MQTT packet, or the bytes read before the peer closed (b"" if none)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
            found, _used = wire.frames(data)
            if found:
                return data[: found[0][2]]
    except (TimeoutError, ssl.SSLError, ConnectionError):
        return data


def connack(
    pixit: SecurityPixit, account: Account | None, version: int
) -> tuple[int | None, bytes]:
    """CONNECT over TLS as ``account`` (None: anonymous); the CONNACK's code and the raw bytes
    (code None when no CONNACK came); inconclusive when TLS itself fails (SEC-01 judges it)."""
    try:
        tls = tls_connect(pixit)
    except (OSError, ssl.SSLError) as exc:
        raise Inconclusive(f"no TLS connection to {pixit.url} to send CONNECT on: {exc}") from None
    with tls:
        user, password = (account.username, account.password) if account else (None, None)
        tls.sendall(
            wire.connect(
                f"r197sec-{account.username if account else 'anon'}"[:23], version=version,
                keepalive=10, clean=True, username=user, password=password,
            )
        )  # fmt: skip
        answer = read_packet(tls)
    if len(answer) >= 4 and answer[0] >> 4 == wire.CONNACK:
        return answer[3], answer
    return None, answer


def probe(
    pixit: SecurityPixit, account: Account, *, client_id: str | None = None, v5: bool = True
) -> ProbeClient:
    """A paho client over TLS as ``account``, not yet connected."""
    assert pixit.url is not None
    role = RoleConfig(url=pixit.url, username=account.username, password=account.password)
    return ProbeClient(role, v5=v5, client_id=client_id, tls=client_context(ca_path(pixit)))


def connected(client: ProbeClient, who: str) -> ProbeClient:
    """Connect and demand Success: a secure IUT that refuses its own accounts is inconclusive
    for the case at hand (another case judges authentication)."""
    try:
        _flags, rc = client.connect()
    except (OSError, ssl.SSLError) as exc:
        raise Inconclusive(f"{who} could not connect over TLS: {exc}") from None
    if rc != 0:
        client.disconnect()
        raise Inconclusive(f"{who}'s CONNECT was refused (CONNACK {rc}): check the PIXIT")
    return client


def two_accounts(request: pytest.FixtureRequest, pixit: SecurityPixit) -> tuple[Account, Account]:
    if len(pixit.accounts) < 2:
        not_applicable(request, "PIXIT security.accounts needs two device accounts")
    return pixit.accounts[0], pixit.accounts[1]
