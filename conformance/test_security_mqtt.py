"""R197-SEC-01..09: the broker's secured listener (TLS, accounts, ACL, client ids).

Against the IUT's ``mqtt-broker`` ``security`` block, or the reference Mosquitto in secure mode
(TLS only, TLS >= 1.2, one password per account, per-device ACL, client id = username).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import time
import uuid
import warnings

import pytest
from cryptography import x509

from conformance.model import Inconclusive, case
from conformance.mqtt_client import ProbeClient
from conformance.security import (
    ca_path,
    client_context,
    connack,
    connected,
    host_port,
    need,
    probe,
    read_packet,
    tls_connect,
    two_accounts,
)
from conformance.security_pixit import Account, SecurityPixit
from gateway.transports import mqtt_wire as wire

TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")  # RFC 8996: nothing older
REFUSED = {wire.V5: (0x86, 0x87), wire.V311: (4, 5)}  # MQTT 5 3.2.2.2, MQTT 3.1.1 3.2.2.3


@case("R197-SEC-01", "A client trusting the given CA completes a TLS 1.2 or 1.3 handshake with the broker's secured listener",
      verifies=["RFC8446-4.2.1", "RFC8446-4.4.2", "MQTT5-5.4.3", "Y4806"], theme="security",
      pics=["sec.mqtt-tls"])  # fmt: skip
def test_tls_handshake_with_the_ca(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit
) -> None:
    need(request, secure_broker, "url", "ca_file")
    try:
        with tls_connect(secure_broker) as tls:
            version, cipher = tls.version(), tls.cipher()
    except ssl.SSLError as exc:
        raise AssertionError(f"TLS handshake with {secure_broker.url} failed: {exc}") from None
    assert version in TLS_VERSIONS, f"negotiated {version} ({cipher}), not TLS 1.2 or 1.3"


@case("R197-SEC-02", "A ClientHello offering only TLS 1.1 is refused with an alert",
      verifies=["RFC8996-4", "RFC5246-E.1"], theme="security", pics=["sec.mqtt-tls"])  # fmt: skip
def test_tls_1_1_refused(request: pytest.FixtureRequest, secure_broker: SecurityPixit) -> None:
    need(request, secure_broker, "url", "ca_file")
    old = client_context_tls11(secure_broker)
    try:
        with tls_connect(secure_broker, old) as tls:
            version = tls.version()
    except ssl.SSLError as exc:
        if exc.reason == "NO_PROTOCOLS_AVAILABLE":  # our OpenSSL cannot offer TLS 1.1 at all
            raise Inconclusive(f"this client's OpenSSL cannot offer TLS 1.1: {exc}") from None
        return  # refused (the reference: alert protocol_version): what RFC 8996 asks
    except ConnectionError:
        return  # the server closed the connection on the TLS 1.1 ClientHello
    raise AssertionError(f"the broker negotiated {version} with a TLS 1.1-only client")


def client_context_tls11(pixit: SecurityPixit) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_path(pixit)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let our side offer TLS 1.1 at all
    return context


@case("R197-SEC-03", "Plain MQTT on the secured port gets no CONNACK",
      verifies=["MQTT5-5.4.5"], theme="security", pics=["sec.mqtt-tls"])  # fmt: skip
def test_plain_mqtt_on_tls_port(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit
) -> None:
    need(request, secure_broker, "url")
    assert secure_broker.url is not None
    host, port = host_port(secure_broker.url)
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.sendall(wire.connect("r197sec-plain", version=wire.V311, keepalive=10, clean=True))
        answer = read_packet(raw, timeout=3)
    assert not (answer and answer[0] >> 4 == wire.CONNACK), (
        f"plain CONNECT on the TLS port answered with a CONNACK: {answer[:16].hex(' ')}"
    )


def _san_matches(cert: x509.Certificate, host: str) -> tuple[bool, list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False, []
    ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    dns = san.get_values_for_type(x509.DNSName)
    try:
        wanted = str(ipaddress.ip_address(host))
        return wanted in ips, ips + dns
    except ValueError:
        return host.lower() in (d.lower() for d in dns), ips + dns


@case("R197-SEC-04", "The broker's certificate chains to the CA, names the host of its URL and is within its validity period",
      verifies=["RFC6125-6", "RFC5280-6.1", "RFC5280-4.1.2.5"], theme="security",
      pics=["sec.mqtt-tls"])  # fmt: skip
def test_broker_certificate(request: pytest.FixtureRequest, secure_broker: SecurityPixit) -> None:
    need(request, secure_broker, "url", "ca_file")
    assert secure_broker.url is not None
    host, _port = host_port(secure_broker.url)
    # Verification off here so that each property is reported on its own, then checked.
    loose = ssl.create_default_context()
    loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
    with tls_connect(secure_broker, loose) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der, "the broker presented no certificate"
    cert = x509.load_der_x509_certificate(der)
    named, names = _san_matches(cert, host)
    assert named, f"subjectAltName {names} does not name {host} (RFC 6125 6)"
    now = dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert start <= now <= end, f"validity {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ}"
    try:
        with tls_connect(secure_broker, client_context(ca_path(secure_broker))):
            pass
    except ssl.SSLCertVerificationError as exc:
        raise AssertionError(f"no path to the given CA: {exc.verify_message}") from None


@case("R197-SEC-05", "An anonymous CONNECT on the secured listener is refused with a reason code",
      verifies=["MQTT5-5.4.1", "MQTT5-3.2.2.2"], theme="security", pics=["sec.mqtt-auth"])  # fmt: skip
@pytest.mark.parametrize("version", [wire.V5, wire.V311], ids=["v5", "v311"])
def test_anonymous_refused(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit, version: int
) -> None:
    need(request, secure_broker, "url", "ca_file")
    code, raw = connack(secure_broker, None, version)
    _judge_refusal(code, raw, version, "anonymous CONNECT")


def _judge_refusal(code: int | None, raw: bytes, version: int, what: str) -> None:
    assert code is not None, f"{what}: no CONNACK, connection closed after {raw[:16].hex(' ')!r}"
    assert code != 0, f"{what} accepted (CONNACK {raw.hex(' ')})"
    assert code in REFUSED[version], (
        f"{what} refused with code 0x{code:02x}, not {' or '.join(f'0x{c:02x}' for c in REFUSED[version])}"
    )


@case("R197-SEC-06", "A device account with a wrong password (another account's) is refused",
      verifies=["MQTT5-5.4.1", "MQTT5-3.2.2.2", "X1361"], theme="security",
      pics=["sec.mqtt-auth"])  # fmt: skip
@pytest.mark.parametrize("version", [wire.V5, wire.V311], ids=["v5", "v311"])
def test_wrong_password_refused(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit, version: int
) -> None:
    need(request, secure_broker, "url", "ca_file")
    a, b = two_accounts(request, secure_broker)
    right, _ = connack(secure_broker, a, version)
    if right != 0:
        raise Inconclusive(
            f"{a.username} with its own password got CONNACK {right}: check the PIXIT"
        )
    wrong = Account(
        username=a.username, password=b.password if b.password != a.password else a.password + "x"
    )
    code, raw = connack(secure_broker, wrong, version)
    _judge_refusal(code, raw, version, f"{a.username} with another account's password")


def _first(client: ProbeClient, within: float = 3.0) -> bytes | None:
    message = client.receive(timeout=within)
    return None if message is None else bytes(message.payload)


@case("R197-SEC-07", "A device cannot publish a reading under another device's topic",
      verifies=["MQTT5-5.4.2", "X1361"], theme="security", pics=["sec.mqtt-acl"])  # fmt: skip
def test_publish_as_another_device(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit
) -> None:
    need(request, secure_broker, "url", "ca_file", "reader")
    a, b = two_accounts(request, secure_broker)
    assert secure_broker.reader is not None
    reader = connected(probe(secure_broker, secure_broker.reader), "the reader account")
    dev = connected(probe(secure_broker, a), a.username)
    try:
        for device in (a.device, b.device):
            reader.subscribe(secure_broker.topic("up", device), qos=1)
        marker = uuid.uuid4().hex[:8].encode()
        dev.publish(secure_broker.topic("up", b.device), b"spoofed " + marker, qos=1)
        dev.publish(secure_broker.topic("up", a.device), b"genuine " + marker, qos=1)
        got = [_first(reader), _first(reader, within=1.0)]
    finally:
        dev.disconnect()
        reader.disconnect()
    if b"genuine " + marker not in got:
        raise Inconclusive(f"{a.username}'s reading on its own topic never arrived: got {got}")
    assert b"spoofed " + marker not in got, (
        f"{a.username}'s publish under {b.device}'s topic was delivered: {got}"
    )


@case("R197-SEC-08", "A device subscribing to another device's command topic receives none of its commands",
      verifies=["MQTT5-5.4.2"], theme="security", pics=["sec.mqtt-acl"])  # fmt: skip
def test_subscribe_to_another_devices_commands(
    request: pytest.FixtureRequest, secure_broker: SecurityPixit
) -> None:
    need(request, secure_broker, "url", "ca_file", "reader")
    a, b = two_accounts(request, secure_broker)
    assert secure_broker.reader is not None
    cmd = secure_broker.topic("cmd", a.device)
    owner = connected(probe(secure_broker, a), a.username)
    spy = connected(probe(secure_broker, b), b.username)
    sender = connected(probe(secure_broker, secure_broker.reader), "the reader account")
    try:
        owner.subscribe(cmd, qos=1)
        with contextlib.suppress(AssertionError):  # granted or refused: delivery is the test
            spy.subscribe(cmd, qos=1)
        sender.publish(cmd, b'{"powerState": "off"}', qos=1)
        mine, spied = _first(owner), _first(spy, within=1.5)
    finally:
        for c in (owner, spy, sender):
            c.disconnect()
    if mine is None:
        raise Inconclusive(f"the command on {cmd} did not reach its own device {a.username}")
    assert spied is None, f"{b.username} received {a.device}'s command {spied!r}"


@case("R197-SEC-09", "Another account connecting with a device's client id does not end the device's session",
      verifies=["MQTT5-5.4.8", "MQTT311-3.1.4-2"], theme="security",
      pics=["sec.mqtt-takeover"])  # fmt: skip
def test_client_id_takeover(request: pytest.FixtureRequest, secure_broker: SecurityPixit) -> None:
    need(request, secure_broker, "url", "ca_file", "reader")
    a, b = two_accounts(request, secure_broker)
    assert secure_broker.reader is not None
    reader = connected(probe(secure_broker, secure_broker.reader), "the reader account")
    victim = connected(probe(secure_broker, a, client_id=a.device), a.username)
    intruder = probe(secure_broker, b, client_id=a.device)
    try:
        reader.subscribe(secure_broker.topic("up", a.device), qos=1)
        try:
            _flags, rc = intruder.connect()
        except (OSError, ssl.SSLError):
            rc = None  # refusing the intruder outright is fine too
        time.sleep(0.5)  # a takeover closes the victim's connection at once (MQTT 5 3.1.4-3)
        ended = not victim.disconnects.empty()
        reason = None if victim.disconnects.empty() else victim.disconnects.get()
        if not ended:
            victim.publish(secure_broker.topic("up", a.device), b"still here", qos=1)
        got = _first(reader)
    finally:
        for c in (intruder, victim, reader):
            c.disconnect()
    assert not ended, (
        f"{b.username} connecting as client id {a.device!r} (CONNACK {rc}) ended "
        f"{a.username}'s connection (reason {reason})"
    )
    assert got == b"still here", f"{a.username}'s publish after the attempt: reader got {got!r}"
