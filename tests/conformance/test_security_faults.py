"""The R197-SEC cases must fail where an implementation is insecure: faulty IUTs on [::1].

Each test runs the suite (``pytest conformance --iut ...``) in a subprocess against a part
with one security fault and checks the verdicts in its report.json.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.transports import mqtt_wire as wire
from testbed.brokers import BrokerTls, MosquittoBroker, city_accounts, find_mosquitto
from testbed.credentials import CityCredentials
from testbed.parts import GatewayOptions, gateway_spec, rd_spec
from testbed.pki import issue, new_ca
from testbed.processes import ManagedProcess
from tests.conformance.test_catches_faults import run_suite
from tests.conftest import PlatformProcess, free_port


class LaxTlsBroker:
    """A 'secure broker' that speaks TLS 1.1 too and accepts every CONNECT (CONNACK 0)."""

    def __init__(self, workdir: Path, hosts: tuple[str, ...] = ("::1",)) -> None:
        ca = new_ca("lax CA")
        ca.write(workdir / "ca.pem", workdir / "ca.key")
        issue(ca, "lax broker", hosts=hosts).write(workdir / "b.pem", workdir / "b.key")
        self.ca_file = workdir / "ca.pem"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.context.minimum_version = ssl.TLSVersion.TLSv1  # the fault
        self.context.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.context.load_cert_chain(workdir / "b.pem", workdir / "b.key")
        self.server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.server.bind(("::1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                data = tls.recv(4096)
                if data and data[0] >> 4 == wire.CONNECT:
                    v5 = b"MQTT\x05" in data[:12]
                    tls.sendall(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
                    tls.recv(4096)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


@pytest.mark.slow
def test_suite_fails_a_broker_with_tls_1_1_and_no_authentication(tmp_path: Path) -> None:
    """TLS 1.1 negotiated -> R197-SEC-02 fail; anonymous CONNECT accepted -> R197-SEC-05 fail;
    another account's password accepted -> R197-SEC-06 fail; while the handshake with the CA
    and the certificate pass (R197-SEC-01, SEC-04)."""
    broker = LaxTlsBroker(tmp_path)
    accounts = [
        {"username": "noise-a", "password": "pa"},
        {"username": "noise-b", "password": "pb"},
    ]
    try:
        iut = {
            "implementation": "lax TLS broker",
            "roles": {"mqtt-broker": {"url": "mqtt://[::1]:1", "security": {
                "url": f"mqtts://[::1]:{broker.port}", "ca_file": str(broker.ca_file),
                "accounts": accounts}}},
        }  # fmt: skip
        select = "test_tls_ or test_anonymous_refused or test_wrong_password or test_broker_cert"
        verdicts = run_suite(tmp_path, iut, select)
    finally:
        broker.close()
    assert verdicts == {"R197-SEC-01": "pass", "R197-SEC-02": "fail", "R197-SEC-04": "pass",
                        "R197-SEC-05": "fail", "R197-SEC-06": "fail"}  # fmt: skip


@pytest.mark.slow
def test_suite_fails_a_broker_whose_certificate_names_another_host(tmp_path: Path) -> None:
    """A certificate for broker.r197.invalid on [::1] -> R197-SEC-01 and SEC-04 fail."""
    broker = LaxTlsBroker(tmp_path, hosts=("broker.r197.invalid",))
    try:
        security = {"url": f"mqtts://[::1]:{broker.port}", "ca_file": str(broker.ca_file)}
        role = {"url": "mqtt://[::1]:1", "security": security}
        iut = {
            "implementation": "broker with another host's certificate",
            "roles": {"mqtt-broker": role},
        }
        select = "test_tls_handshake_with_the_ca or test_broker_certificate"
        verdicts = run_suite(tmp_path, iut, select)
    finally:
        broker.close()
    assert verdicts == {"R197-SEC-01": "fail", "R197-SEC-04": "fail"}


class CarelessClient:
    """An 'IUT gateway' that connects to its broker without verifying the certificate."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the fault
        while not self.stopped.wait(0.3):
            try:
                with (
                    socket.create_connection(("::1", self.port), timeout=2) as raw,
                    context.wrap_socket(raw) as tls,
                ):
                    tls.sendall(
                        wire.connect("careless", version=wire.V311, keepalive=10, clean=True)
                    )
                    tls.recv(16)
            except OSError:
                continue


@pytest.mark.slow
def test_suite_fails_a_gateway_that_trusts_any_broker(tmp_path: Path) -> None:
    """A gateway sending CONNECT to a broker with a bad certificate fails R197-SEC-10..12."""
    ca = new_ca("trap CA of the IUT")
    ca.write(tmp_path / "trap-ca.pem", tmp_path / "trap-ca.key")
    port = free_port()
    client = CarelessClient(port)
    try:
        iut = {
            "implementation": "careless gateway",
            "roles": {"gateway": {"url": "coap://[::1]:1", "security": {
                "trap_port": port, "trap_ca_cert": str(tmp_path / "trap-ca.pem"),
                "trap_ca_key": str(tmp_path / "trap-ca.key")}}},
        }  # fmt: skip
        verdicts = run_suite(tmp_path, iut, "test_gateway_refuses")
    finally:
        client.stopped.set()
    assert verdicts == {"R197-SEC-10": "fail", "R197-SEC-11": "fail", "R197-SEC-12": "fail"}


@pytest.fixture
def open_platform() -> Iterator[PlatformProcess]:
    platform = PlatformProcess()
    platform.start()
    yield platform
    platform.stop()


@pytest.mark.slow
def test_suite_fails_a_platform_without_authentication(
    tmp_path: Path, open_platform: PlatformProcess
) -> None:
    """No --auth-key, no allow-list: every token case fails (the tokens it is given work,
    so the controls hold); subscriptions and registrations to the metadata address and a
    loopback recorder are accepted, and a remote @context is fetched from it."""
    tokens = {"read": "r", "write": "w", "expired": "e", "tenant": "t"}
    iut = {
        "implementation": "open platform",
        "roles": {"ngsild-platform": {"url": open_platform.base, "security": {
            "url": open_platform.base, "tokens": tokens, "tenant": "city-a"}}},
    }  # fmt: skip
    verdicts = run_suite(tmp_path, iut, "test_security_ngsild")
    for case_id in ("20", "21", "22", "23", "24", "25", "26", "27", "28"):
        assert verdicts[f"R197-SEC-{case_id}"] == "fail", (case_id, verdicts)


@pytest.mark.slow
@pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")
def test_suite_fails_a_gateway_that_takes_forged_notifications(
    tmp_path: Path, open_platform: PlatformProcess
) -> None:
    """Our gateway without a notify token takes any POST /notify: R197-SEC-30 fails; without
    --oscore it takes a plain push (SEC-40 fails) and cannot answer a protected one (SEC-41)."""
    broker = MosquittoBroker(port=free_port())
    broker.start()
    options = GatewayOptions(
        platform_url=open_platform.base, broker_url=broker.url, http_port=free_port(),
        coap_port=free_port("udp"), queue=tmp_path / "q.db", southbound=False,
    )  # fmt: skip
    try:
        with ManagedProcess(gateway_spec(options, verbose=0), log_path=tmp_path / "gw.log"):
            notify = f"http://[::1]:{options.http_port}/notify"
            coap = f"coap://[::1]:{options.coap_port}"
            oscore = {"device": "noise-0001", "master_secret": "00" * 16, "sender_id": "01",
                      "recipient_id": "00"}  # fmt: skip
            security = {"url": notify, "coap_url": coap, "oscore": oscore}
            iut = {
                "implementation": "gateway without a notify token or OSCORE",
                "roles": {"gateway": {"url": coap, "security": security}},
            }
            select = "test_forged_notification or test_unprotected_push or test_protected_push"
            verdicts = run_suite(tmp_path, iut, select)
    finally:
        broker.close()
    assert verdicts == {"R197-SEC-30": "fail", "R197-SEC-40": "fail", "R197-SEC-41": "fail"}


class LaxMosquitto(MosquittoBroker):
    """Mosquitto in secure mode but without the client id tied to the username (so another
    account takes a device's session over, MQTT-3.1.4-2), and with ``writers`` let loose."""

    def _tls_lines(self) -> list[str]:
        return [line for line in super()._tls_lines() if "use_username_as_clientid" not in line]


@pytest.mark.slow
@pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")
def test_suite_fails_a_broker_with_loose_acl_and_client_ids(tmp_path: Path) -> None:
    """Device a may write every device's readings -> R197-SEC-07 fail; client ids free for
    anyone -> R197-SEC-09 fail; the command ACL still holds -> R197-SEC-08 pass."""
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    users = city_accounts(creds, ["noise-a", "noise-b"], observers=0)
    broker = LaxMosquitto(
        port=free_port(), users=users, tls=BrokerTls.of(creds), workdir=tmp_path / "m",
        writers=["noise-a"],
    )  # fmt: skip
    broker.start()
    try:
        accounts = [{"username": u, "password": users[u]} for u in ("noise-a", "noise-b")]
        security = {"url": broker.url, "ca_file": str(creds.ca_file), "accounts": accounts,
                    "reader": {"username": "gateway", "password": users["gateway"]}}  # fmt: skip
        role = {"url": "mqtt://[::1]:1", "security": security}
        iut = {"implementation": "loose Mosquitto", "roles": {"mqtt-broker": role}}
        select = "test_publish_as_another or test_subscribe_to_another or test_client_id_takeover"
        verdicts = run_suite(tmp_path, iut, select)
    finally:
        broker.close()
    assert verdicts == {"R197-SEC-07": "fail", "R197-SEC-08": "pass", "R197-SEC-09": "fail"}


@pytest.mark.slow
def test_suite_fails_a_resource_directory_without_oscore(tmp_path: Path) -> None:
    """testbed rd without --oscore takes a plain registration: R197-SEC-45 fails."""
    port = free_port("udp")
    with ManagedProcess(rd_spec(port=port), log_path=tmp_path / "rd.log"):
        oscore = {"device": "noise-0001", "master_secret": "00" * 16, "sender_id": "01",
                  "recipient_id": "00", "rd_url": f"coap://[::1]:{port}",
                  "rd_id_context": b"r197-rd".hex(), "rd_recipient_id": b"rd".hex()}  # fmt: skip
        role = {"url": "coap://[::1]:1", "security": {"oscore": oscore}}
        iut = {"implementation": "open resource directory", "roles": {"gateway": role}}
        verdicts = run_suite(tmp_path, iut, "test_rd_refuses_unprovisioned")
    assert verdicts == {"R197-SEC-45": "fail"}
