"""Mosquitto in secure mode: TLS only, per-account passwords, client id tied to the username.

Every test runs the real broker on [::1] with certificates of a real CA (testbed.pki) and talks
to it with Python's ssl module or aiomqtt, as the gateway and the devices do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.transports import mqtt_wire as wire
from testbed.brokers import (
    BrokerTls,
    MosquittoBroker,
    acl_text,
    city_accounts,
    find_mosquitto,
    observer_users,
)
from testbed.credentials import CityCredentials
from testbed.pki import issue, new_ca
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")

V5 = aiomqtt.ProtocolVersion.V5
V311 = aiomqtt.ProtocolVersion.V311
DEVICES = ["weather-1", "weather-2"]


def client_context(cafile: Path) -> ssl.SSLContext:
    """What the gateway and the devices use: the city's CA only, host name checked."""
    return ssl.create_default_context(cafile=str(cafile))


@pytest.fixture
def credentials(tmp_path: Path) -> CityCredentials:
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    return creds


@pytest.fixture
async def broker(credentials: CityCredentials, tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    users = city_accounts(credentials, DEVICES, observers=2)
    tls = BrokerTls.of(credentials)
    async with MosquittoBroker(
        port=free_port(), users=users, tls=tls, workdir=tmp_path / "mosquitto"
    ) as running:
        yield running


def client(
    broker: MosquittoBroker, user: str | None, password: str | None, cafile: Path, **kw: object
) -> aiomqtt.Client:
    return aiomqtt.Client(
        "::1", broker.port, username=user, password=password,
        tls_context=client_context(cafile), timeout=5, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version negotiated with the listener (raises ssl.SSLError when refused)."""
    _reader, writer = await asyncio.open_connection("::1", port, ssl=context)
    try:
        version = writer.get_extra_info("ssl_object").version()
        assert isinstance(version, str)
        return version
    finally:
        writer.close()


async def test_tls_handshake_with_the_city_ca(
    broker: MosquittoBroker, credentials: CityCredentials
) -> None:
    """The listener is mqtts:// and a client trusting the city's CA completes the handshake
    (TLS 1.3, and 1.2 when the client offers no more)."""
    assert broker.url == f"mqtts://[::1]:{broker.port}"
    assert await handshake(broker.port, client_context(credentials.ca_file)) == "TLSv1.3"
    tls12 = client_context(credentials.ca_file)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await handshake(broker.port, tls12) == "TLSv1.2"


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
async def test_tls_1_0_and_1_1_are_refused_by_the_broker(
    broker: MosquittoBroker, credentials: CityCredentials, version: str
) -> None:
    """tls_version tlsv1.2 is a minimum in Mosquitto 2.0: a TLS 1.0 or 1.1 ClientHello gets
    the protocol_version alert (RFC 8446 6.2, RFC 8996) from the broker."""
    old = client_context(credentials.ca_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = getattr(ssl.TLSVersion, version)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let our side offer the old version at all
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        await handshake(broker.port, old)


async def test_a_client_trusting_another_ca_refuses_the_broker(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(new_ca("another CA").cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await handshake(broker.port, client_context(other))


@pytest.mark.parametrize("fault", ["wrong host", "expired"])
async def test_a_client_refuses_a_bad_broker_certificate(fault: str, tmp_path: Path) -> None:
    """A certificate naming another host (RFC 6125 6) or past its notAfter (RFC 5280
    4.1.2.5) fails the client's verification, even though the city's CA signed it."""
    ca = new_ca()
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    if fault == "wrong host":
        cert = issue(ca, "broker", hosts=["wrong.example"])
        expected = "IP address mismatch"
    else:
        now = dt.datetime.now(dt.UTC)
        cert = issue(
            ca, "broker", hosts=["::1"], not_before=now - dt.timedelta(days=10),
            not_after=now - dt.timedelta(days=1),
        )  # fmt: skip
        expected = "certificate has expired"
    cert.write(tmp_path / "broker.pem", tmp_path / "broker.key")
    tls = BrokerTls(tmp_path / "ca.pem", tmp_path / "broker.pem", tmp_path / "broker.key")
    async with MosquittoBroker(
        port=free_port(), users={"gateway": "x"}, tls=tls, workdir=tmp_path / "m"
    ) as broker:
        with pytest.raises(ssl.SSLCertVerificationError, match=expected):
            await handshake(broker.port, client_context(tmp_path / "ca.pem"))


@pytest.mark.parametrize(("version", "code"), [(wire.V5, 0x87), (wire.V311, 5)])
async def test_anonymous_clients_are_refused(
    broker: MosquittoBroker, credentials: CityCredentials, version: int, code: int
) -> None:
    """No username: CONNACK 0x87 Not authorized (MQTT 5 3.2.2.2), 5 Not authorized (MQTT 3.1.1
    3.2.2.3); read off the wire, as paho reports both as 0x87."""
    assert await raw_connack(broker.port, credentials.ca_file, version, None, None) == code


@pytest.mark.parametrize(("version", "code"), [(wire.V5, 0x87), (wire.V311, 5)])
async def test_a_wrong_password_is_refused(
    broker: MosquittoBroker, credentials: CityCredentials, version: int, code: int
) -> None:
    """Another account's password does not open this one.  Mosquitto 2.0 answers Not
    authorized (0x87 / 5) rather than 0x86 / 4 Bad user name or password, which MQTT 5 3.2.2.2
    allows (either says why the CONNECT failed; 0x87 does not tell which part was wrong)."""
    other = credentials.mqtt_password("weather-2")
    assert other != credentials.mqtt_password("weather-1")
    got = await raw_connack(broker.port, credentials.ca_file, version, "weather-1", other)
    assert got == code
    right = credentials.mqtt_password("weather-1")
    assert await raw_connack(broker.port, credentials.ca_file, version, "weather-1", right) == 0


async def raw_connack(
    port: int, cafile: Path, version: int, user: str | None, password: str | None
) -> int:
    """Send CONNECT over TLS; the CONNACK's reason (5) / return (3.1.1) code."""
    reader, writer = await asyncio.open_connection("::1", port, ssl=client_context(cafile))
    try:
        connect = wire.connect(
            "probe", version=version, keepalive=10, clean=True, username=user, password=password
        )
        writer.write(connect)
        async with asyncio.timeout(5):
            head = await reader.readexactly(2)
            assert head[0] >> 4 == wire.CONNACK
            body = await reader.readexactly(head[1])  # short: one length byte
        return body[1]
    finally:
        writer.close()


async def first_message(sub: aiomqtt.Client) -> aiomqtt.Message | None:
    try:
        async with asyncio.timeout(5):
            async for message in sub.messages:
                return message
    except TimeoutError:
        return None
    return None


async def test_a_device_cannot_publish_under_another_devices_topic(
    broker: MosquittoBroker, credentials: CityCredentials
) -> None:
    """weather-1's spoofed reading for weather-2 never reaches the gateway; its own, sent
    after it at QoS 1 on the same connection, is the first message the gateway gets."""
    pw = credentials.mqtt_passwords()
    async with (
        client(broker, "gateway", pw["gateway"], credentials.ca_file, protocol=V5) as gw,
        client(broker, "weather-1", pw["weather-1"], credentials.ca_file, protocol=V5) as dev,
    ):
        await gw.subscribe("$share/gw/city/+/+/up/#", qos=1)
        await dev.publish("city/weather/weather-2/up/senml-json", b"spoofed", qos=1)
        await dev.publish("city/weather/weather-1/up/senml-json", b"genuine", qos=1)
        message = await first_message(gw)
        assert message is not None
        assert (str(message.topic), message.payload) == (
            "city/weather/weather-1/up/senml-json",
            b"genuine",
        )


async def test_another_account_cannot_take_a_devices_client_id_over(
    broker: MosquittoBroker, credentials: CityCredentials
) -> None:
    """weather-2 connecting with client id "weather-1" gets a session of its own
    (use_username_as_clientid), so weather-1 stays connected and its readings flow."""
    pw = credentials.mqtt_passwords()
    ca = credentials.ca_file
    async with (
        client(broker, "gateway", pw["gateway"], ca, protocol=V5) as gw,
        client(broker, "weather-1", pw["weather-1"], ca, protocol=V5, identifier="weather-1") as a,
    ):
        await gw.subscribe("city/+/+/up/#", qos=1)
        async with client(
            broker, "weather-2", pw["weather-2"], ca, protocol=V5, identifier="weather-1"
        ) as b:
            await b.publish("city/weather/weather-2/up/senml-json", b"from b", qos=1)
            # A taken-over session would end a's connection: this publish would fail.
            await a.publish("city/weather/weather-1/up/senml-json", b"from a", qos=1)
            got = {(await first_message(gw) or pytest.fail("no message")).payload for _ in "ab"}
        assert got == {b"from a", b"from b"}


async def test_observers_each_have_an_account_that_only_reads(
    broker: MosquittoBroker, credentials: CityCredentials
) -> None:
    """Two observers read at once (no takeover); an observer's publish is not delivered."""
    pw = credentials.mqtt_passwords()
    ca = credentials.ca_file
    async with (
        client(broker, "observer", pw["observer"], ca, protocol=V5) as one,
        client(broker, "observer-01", pw["observer-01"], ca, protocol=V5) as two,
        client(broker, "weather-1", pw["weather-1"], ca, protocol=V5) as dev,
    ):
        for sub in (one, two):
            await sub.subscribe("city/#", qos=1)
        await one.publish("city/weather/weather-1/up/senml-json", b"forged", qos=1)
        await dev.publish("city/weather/weather-1/up/senml-json", b"real", qos=1)
        for sub in (one, two):
            message = await first_message(sub)
            assert message is not None
            assert message.payload == b"real"


def test_secure_accounts_and_their_acl(credentials: CityCredentials) -> None:
    """Distinct passwords for every account; one read-only ACL block per observer."""
    users = city_accounts(credentials, DEVICES, observers=3)
    assert list(users)[:5] == ["gateway", "observer", "observer-01", "observer-02", "observer-03"]
    assert len(set(users.values())) == len(users)
    acl = acl_text(users)
    assert [line for line in acl.splitlines() if line.startswith("user ")] == [
        "user gateway",
        *(f"user {u}" for u in observer_users(3)),
    ]
    assert "user weather-1" not in acl  # devices fall under the %u patterns
    # The benchmarks' load generator may write readings for any device, and only that.
    assert "user loadgen\ntopic write city/+/+/up/#\n" in acl_text(users, writers=["loadgen"])


def test_a_tls_broker_needs_accounts(credentials: CityCredentials) -> None:
    with pytest.raises(ValueError, match="needs users"):
        MosquittoBroker(port=free_port(), tls=BrokerTls.of(credentials))
