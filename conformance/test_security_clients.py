"""R197-SEC-10..13: MQTT clients (gateway, devices) authenticate the broker before they talk.

The suite plays a broker that presents a bad certificate (another CA, expired, another host
name) and watches what the client does: a careful client aborts the TLS handshake, so no MQTT
CONNECT (and no password) ever reaches the impostor (MQTT 5 5.4.3, RFC 5280, RFC 6125 6).

The reference gateway and devices are started against the trap; an IUT gateway names, in its
``security`` PIXIT, the port it connects to (``trap_port``) and a CA it trusts there
(``trap_ca_cert``, ``trap_ca_key``), which the suite signs the bad certificates with.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance.iut import IutConfig
from conformance.model import Inconclusive, case
from conformance.security import not_applicable
from devices.scenario import load_scenario
from gateway.transports import mqtt_wire as wire
from testbed.parts import GatewayOptions, devices_spec, gateway_spec
from testbed.pki import Issued, issue, new_ca, write_private
from testbed.processes import ManagedProcess, free_port

FAULTS = ("other-ca", "expired", "wrong-host")


@dataclass
class Trap:
    """A TLS listener on [::1] presenting one certificate; what each connection did."""

    port: int
    cert: Issued
    events: list[str] = field(default_factory=list)
    connects: list[bytes] = field(default_factory=list)  # MQTT bytes that got through

    def serve(self, workdir: Path) -> Callable[[], None]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.write(workdir / "trap.pem", workdir / "trap.key")
        context.load_cert_chain(workdir / "trap.pem", workdir / "trap.key")
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("::1", self.port))
        server.listen(8)

        def accept() -> None:
            while True:
                try:
                    raw, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=self._one, args=(raw, context), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

        def stop() -> None:
            # shutdown first: a thread blocked in accept() keeps a closed socket listening,
            # and the next case (an IUT's fixed trap_port) could not bind the port again.
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()

        return stop

    def _one(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        raw.settimeout(5)
        try:
            with context.wrap_socket(raw, server_side=True) as tls:
                data = tls.recv(4096)
        except ssl.SSLError as exc:
            self.events.append(f"handshake aborted by the client ({exc.reason})")
            return
        except OSError as exc:
            self.events.append(f"connection ended during the handshake ({exc})")
            return
        self.events.append(f"handshake completed, then {data[:12].hex(' ') or 'nothing'}")
        if data:
            self.connects.append(data)


def bad_certificate(fault: str, trusted: Issued) -> Issued:
    now = dt.datetime.now(dt.UTC)
    if fault == "other-ca":
        return issue(new_ca("r197 impostor CA"), "impostor broker", hosts=["::1", "localhost"])
    if fault == "expired":
        return issue(
            trusted, "expired broker", hosts=["::1", "localhost"],
            not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
        )  # fmt: skip
    return issue(trusted, "broker elsewhere", hosts=["broker.r197.invalid"])


@dataclass
class ClientUnderTest:
    """A client that connects to mqtts://[::1]:port trusting ``ca``; ``run`` starts it (the
    reference) or is None (an IUT, already pointed at the port)."""

    port: int
    ca: Issued
    run: Callable[[Path], ManagedProcess] | None = None


def _reference_ca(workdir: Path) -> Issued:
    ca = new_ca("r197 trap CA")
    ca.write(workdir / "trap-ca.pem", workdir / "trap-ca.key")
    return ca


def _iut_client(request: pytest.FixtureRequest, iut: IutConfig, role: str) -> ClientUnderTest:
    pixit = iut.roles[role].security  # type: ignore[index]
    if pixit is None or not (pixit.trap_port and pixit.trap_ca_cert and pixit.trap_ca_key):
        not_applicable(
            request, f"the IUT's {role} gives no security.trap_port, trap_ca_cert and trap_ca_key"
        )
    assert pixit is not None
    assert pixit.trap_port is not None
    ca = Issued.read(Path(pixit.trap_ca_cert or ""), Path(pixit.trap_ca_key or ""))
    return ClientUnderTest(pixit.trap_port, ca)


@pytest.fixture
def gateway_client(
    request: pytest.FixtureRequest, iut: IutConfig, tmp_path: Path
) -> ClientUnderTest:
    if "gateway" in iut.roles:
        return _iut_client(request, iut, "gateway")
    ca = _reference_ca(tmp_path)
    port = free_port()

    def run(workdir: Path) -> ManagedProcess:
        options = GatewayOptions(
            platform_url="http://[::1]:9", broker_url=f"mqtts://[::1]:{port}",
            http_port=free_port(), coap_port=free_port("udp"), queue=workdir / "q.db",
            broker_user="gateway", broker_password="r197-trap", broker_ca=workdir / "trap-ca.pem",
            southbound=False,
        )  # fmt: skip
        spec = gateway_spec(options, verbose=1, name="trap-gateway", wait_for_mqtt=False)
        return ManagedProcess(spec, log_path=workdir / "trap-gateway.log")

    return ClientUnderTest(port, ca, run)


@pytest.fixture
def device_client(
    request: pytest.FixtureRequest, iut: IutConfig, tmp_path: Path
) -> ClientUnderTest:
    if "mqtt-device" in iut.roles:
        return _iut_client(request, iut, "mqtt-device")
    ca = _reference_ca(tmp_path)
    port = free_port()

    def run(workdir: Path) -> ManagedProcess:
        scenario = workdir / "trap-devices.toml"
        scenario.write_text(
            '[[groups]]\nkind = "noise"\ncount = 1\nprotocol = "mqtt"\ninterval = 1\n'
        )
        ids = [d.device_id for d in load_scenario(scenario).devices()]
        passwords = workdir / "trap-passwords.json"
        write_private(
            passwords, ("{" + ", ".join(f'"{d}": "r197-trap"' for d in ids) + "}").encode()
        )
        extra = ["--broker", f"mqtts://[::1]:{port}", "--broker-ca", str(workdir / "trap-ca.pem")]
        extra += ["--passwords", str(passwords)]
        spec = devices_spec(scenario=scenario, name="trap-devices", extra=extra)
        return ManagedProcess(spec, log_path=workdir / "trap-devices.log")

    return ClientUnderTest(port, ca, run)


@pytest.fixture
def observe(tmp_path: Path, iut: IutConfig) -> Iterator[Callable[[ClientUnderTest, str], Trap]]:
    """Run the client against a trap presenting ``fault``'s certificate; the trap afterwards."""
    stops: list[Callable[[], object]] = []

    def run(client: ClientUnderTest, fault: str) -> Trap:
        trap = Trap(client.port, bad_certificate(fault, client.ca))
        stops.append(trap.serve(tmp_path))
        proc = client.run(tmp_path) if client.run else None
        if proc is not None:
            proc.start()
            stops.append(proc.stop)
        deadline = time.monotonic() + float(iut.pixit_value("sec.client_wait_s"))
        # Two attempts: a client that retries after a refusal must refuse again.
        while len(trap.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # the last attempt's bytes, if it sends any
        return trap

    yield run
    for stop in reversed(stops):
        stop()


def judge(trap: Trap, who: str, fault: str) -> None:
    if not trap.events:
        raise Inconclusive(f"{who} never connected to the trap on [::1]:{trap.port}")
    assert not trap.connects, (
        f"{who} accepted a broker certificate ({fault}) and sent "
        f"{trap.connects[0][:24].hex(' ')}"
        + (" (an MQTT CONNECT)" if trap.connects[0][0] >> 4 == wire.CONNECT else "")
        + f"; attempts: {trap.events}"
    )


@case("R197-SEC-10", "The gateway sends no CONNECT to a broker whose certificate another CA signed",
      verifies=["RFC5280-6.1", "MQTT5-5.4.3", "X1361"], theme="security",
      pics=["sec.tls-client"])  # fmt: skip
def test_gateway_refuses_other_ca(
    gateway_client: ClientUnderTest, observe: Callable[[ClientUnderTest, str], Trap]
) -> None:
    judge(observe(gateway_client, "other-ca"), "the gateway", "another CA")


@case("R197-SEC-11", "The gateway sends no CONNECT to a broker whose certificate has expired",
      verifies=["RFC5280-4.1.2.5", "MQTT5-5.4.3"], theme="security",
      pics=["sec.tls-client"])  # fmt: skip
def test_gateway_refuses_expired(
    gateway_client: ClientUnderTest, observe: Callable[[ClientUnderTest, str], Trap]
) -> None:
    judge(observe(gateway_client, "expired"), "the gateway", "expired")


@case("R197-SEC-12", "The gateway sends no CONNECT to a broker whose certificate names another host",
      verifies=["RFC6125-6", "MQTT5-5.4.3"], theme="security", pics=["sec.tls-client"])  # fmt: skip
def test_gateway_refuses_wrong_host(
    gateway_client: ClientUnderTest, observe: Callable[[ClientUnderTest, str], Trap]
) -> None:
    judge(observe(gateway_client, "wrong-host"), "the gateway", "another host name")


@case("R197-SEC-13", "An MQTT device sends no CONNECT to a broker with a bad certificate (another CA, expired, another host)",
      verifies=["RFC5280-6.1", "RFC5280-4.1.2.5", "RFC6125-6", "MQTT5-5.4.3"], theme="security",
      pics=["sec.tls-client"])  # fmt: skip
@pytest.mark.parametrize("fault", FAULTS)
def test_device_refuses_bad_broker(
    device_client: ClientUnderTest, observe: Callable[[ClientUnderTest, str], Trap], fault: str
) -> None:
    judge(observe(device_client, fault), "the device", fault)
