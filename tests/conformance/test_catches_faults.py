# ruff: noqa: E501  # IUT documents read best on one line
"""The suite must fail where implementations are wrong: broken variants of reference parts."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance.coap_raw import ACCEPT, ACK, CONTENT_FORMAT, Message, decode, encode, uint
from gateway.transports import mqtt_wire as wire
from testbed.brokers import MosquittoBroker
from testbed.parts import GatewayOptions, gateway_spec
from testbed.processes import ManagedProcess
from tests.conftest import ROOT, PlatformProcess, free_port


def run_suite(tmp_path: Path, iut: dict[str, Any], select: str) -> dict[str, str]:
    """Run `pytest conformance/ --iut ... -k select`; returns {case id: verdict}."""
    iut_file = tmp_path / "iut.yaml"
    iut_file.write_text(json.dumps(iut))  # JSON is YAML
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "pytest", "conformance", "--iut", str(iut_file)]
    cmd += ["--r197-report", str(report), "-k", select, "-q", "-p", "no:cacheprovider"]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    doc = json.loads((report / "report.json").read_text())
    verdicts: dict[str, str] = {}
    for r in doc["results"]:
        # A parametrized case fails when any of its runs fails.
        if verdicts.get(r["id"]) != "fail":
            verdicts[r["id"]] = r["verdict"]
    return verdicts


class FakeCoapServer:
    """A UDP server on [::1] answering each decodable CoAP request with :meth:`answer`'s bytes,
    in a thread of its own: a faulty 'CoAP device' for the suite to catch."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self, request: Message) -> bytes:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            self.sock.sendto(self.answer(decode(data)), addr)

    def close(self) -> None:
        self.sock.close()


class BrokenCoap(FakeCoapServer):
    """A CoAP server that answers 2.05 to everything and never echoes the token."""

    def answer(self, request: Message) -> bytes:
        return encode(Message(ACK, 0x45, request.mid, b"", [(12, b"")], b"hello"))  # no token


@pytest.fixture
def broken_coap() -> Iterator[BrokenCoap]:
    server = BrokenCoap()
    yield server
    server.close()


@pytest.mark.slow
def test_suite_fails_a_coap_server_that_drops_tokens_and_ignores_paths(
    tmp_path: Path, broken_coap: BrokenCoap
) -> None:
    """Token not echoed -> R197-COAP-04 fail; 2.05 for an unknown path -> R197-COAP-06 fail."""
    iut = {
        "implementation": "broken CoAP",
        "roles": {"coap-device": {"url": f"coap://[::1]:{broken_coap.port}"}},
    }
    verdicts = run_suite(tmp_path, iut, "test_token_echo or test_not_found or test_wkc")
    assert verdicts["R197-COAP-04"] == "fail"
    assert verdicts["R197-COAP-06"] == "fail"
    assert verdicts["R197-COAP-01"] == "fail"  # no link-format either


class _WrongStatus(http.server.BaseHTTPRequestHandler):
    """A 'platform' that answers 200 where NGSI-LD says 201, and never 409."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    """Serve in a daemon thread while the block runs; yields the port."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.mark.slow
def test_suite_fails_a_platform_with_wrong_status_codes(tmp_path: Path) -> None:
    """200 instead of 201 -> R197-NGSILD-01 fail; no 409 -> R197-NGSILD-02 fail."""
    with serving(_V6Server(("::1", 0), _WrongStatus)) as port:
        iut = {"implementation": "broken platform",
               "roles": {"ngsild-platform": {"url": f"http://[::1]:{port}"}}}  # fmt: skip
        verdicts = run_suite(tmp_path, iut, "test_create or test_create_twice")
    assert verdicts["R197-NGSILD-01"] == "fail"
    assert verdicts["R197-NGSILD-02"] in ("fail", "error")


@contextlib.contextmanager
def reference_gateway(
    tmp_path: Path, platform_url: str, broker_url: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Our gateway as a process on [::1], writing to ``platform_url``; yields its CoAP port."""
    options = GatewayOptions(
        platform_url=platform_url, broker_url=broker_url, http_port=free_port(),
        coap_port=free_port("udp"), queue=tmp_path / "q.db", southbound=False,
    )  # fmt: skip
    spec = replace(gateway_spec(options, verbose=0), env=env or {})
    with ManagedProcess(spec, log_path=tmp_path / "gateway.log"):
        yield options.coap_port


@contextlib.contextmanager
def gateway_under_test(
    tmp_path: Path,
    implementation: str,
    *,
    env: dict[str, str] | None = None,
    uplink: type[LossyUplink] | None = None,
) -> Iterator[dict[str, Any]]:
    """Our gateway as the IUT, with a platform and Mosquitto; yields the IUT document.

    ``uplink``, when given, is an HTTP handler put between the gateway and the platform.
    """
    platform = PlatformProcess()
    platform.start()
    broker = MosquittoBroker(port=free_port())
    broker.start()
    with contextlib.ExitStack() as stack:
        stack.callback(platform.stop)
        stack.callback(broker.close)
        target = platform.base
        if uplink is not None:
            uplink.upstream = platform.base
            port = stack.enter_context(serving(_V6Server(("::1", 0), uplink)))
            target = f"http://[::1]:{port}"
        with reference_gateway(tmp_path, target, broker.url, env) as coap_port:
            yield {
                "implementation": implementation,
                "roles": {
                    "gateway": {"url": f"coap://[::1]:{coap_port}", "resources": {"push": "/up"}},
                    "mqtt-broker": {"url": broker.url},
                    "ngsild-platform": {"url": platform.base},
                },
            }


@pytest.mark.slow
def test_suite_fails_a_gateway_that_does_not_convert_units(tmp_path: Path) -> None:
    """A gateway whose weather profile forgets Pa -> hPa fails R197-GW-03 and only that."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    weather = (ROOT / "gateway" / "profile_data" / "weather.toml").read_text()
    broken = weather.replace('unit_code = "A97"\nfactor = 0.01', 'unit_code = "A97"\nfactor = 1.0')
    assert broken != weather
    (profiles / "weather.toml").write_text(broken.replace("max = 1100", "max = 200000"))
    env = {"TESTBED_GATEWAY__PROFILES_DIR": str(profiles)}
    with gateway_under_test(tmp_path, "gateway without unit conversion", env=env) as iut:
        verdicts = run_suite(tmp_path, iut, "test_unit_conversion or test_senml_cbor_over_mqtt")
    assert verdicts["R197-GW-03"] == "fail"
    assert verdicts["R197-GW-01"] == "pass"


class LossyUplink(http.server.BaseHTTPRequestHandler):
    """Between a gateway and the platform: forwards everything but every 4th noise reading.

    It answers the gateway with the platform's own status, so the gateway believes every
    reading was stored: the fault of a gateway that loses readings without knowing it.
    """

    upstream = ""
    seen = 0

    def _forward(self, body: bytes | None) -> None:
        answer = httpx.request(
            self.command, self.upstream + self.path, content=body,
            headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")},
            timeout=10,
        )  # fmt: skip
        self.send_response(answer.status_code)
        for key in ("Content-Type", "Location"):
            if key in answer.headers:
                self.send_header(key, answer.headers[key])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.split("?")[0].endswith("/entityOperations/upsert"):
            kept = []
            for entity in json.loads(body):
                if str(entity.get("type", "")).endswith("NoiseLevelObserved"):
                    type(self).seen += 1
                    if type(self).seen % 4 == 0:
                        continue
                kept.append(entity)
            body = json.dumps(kept).encode()
        self._forward(body)

    def do_GET(self) -> None:
        self._forward(None)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_suite_fails_a_gateway_that_loses_readings(tmp_path: Path) -> None:
    """A gateway whose uplink silently loses every 4th reading fails R197-GW-06."""
    with gateway_under_test(tmp_path, "gateway that loses readings", uplink=LossyUplink) as iut:
        verdicts = run_suite(tmp_path, iut, "test_one_in_one_out_in_order")
    assert LossyUplink.seen >= 4, "the gateway sent too few readings to lose one"
    assert verdicts["R197-GW-06"] == "fail"


class BadSenmlCoap(BrokenCoap):
    """A CoAP 'sensor' whose payloads break RFC 8428 and waste bytes.

    Two value fields per record, an unregistered unit, JSON labelled as CBOR when CBOR is
    asked for, and a pack padded past the default energy budget.
    """

    PACK = json.dumps(
        [
            {"bn": "urn:dev:bad:", "n": f"temp {i}", "u": "celsius", "v": 20.5, "vs": "warm"}
            for i in range(10)
        ]
    ).encode()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            request = decode(data)
            accept = request.option(ACCEPT)
            fmt = int.from_bytes(accept, "big") if accept is not None else 110
            options = [(CONTENT_FORMAT, uint(fmt))]
            answer = Message(ACK, 0x45, request.mid, request.token, options, self.PACK)
            self.sock.sendto(encode(answer), addr)


@pytest.mark.slow
def test_suite_fails_a_device_with_bad_senml(tmp_path: Path) -> None:
    """Every SenML and energy case fails against a device that gets its payloads wrong."""
    server = BadSenmlCoap()
    try:
        iut = {
            "implementation": "bad SenML",
            "roles": {"coap-device": {"url": f"coap://[::1]:{server.port}"}},
        }
        verdicts = run_suite(tmp_path, iut, "test_payloads")
    finally:
        server.close()
    assert verdicts["R197-SENML-01"] == "fail"  # "vs" beside "v", and names with spaces
    assert verdicts["R197-SENML-02"] == "fail"  # the "CBOR" is not CBOR
    assert verdicts["R197-SENML-03"] == "fail"  # "celsius" is not in the SenML units registry
    assert verdicts["R197-SENML-04"] == "fail"
    assert verdicts["R197-ENERGY-01"] == "fail"  # over the default 600-byte budget
    assert verdicts["R197-ENERGY-02"] == "fail"  # no smaller encoding when asked for one


@pytest.mark.slow
def test_suite_fails_a_role_addressed_over_ipv4(tmp_path: Path) -> None:
    """A platform reached only at an IPv4 address fails R197-IPV6-01."""
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WrongStatus)) as port:
        iut = {"implementation": "IPv4-only platform",
               "roles": {"ngsild-platform": {"url": f"http://127.0.0.1:{port}"}}}  # fmt: skip
        verdicts = run_suite(tmp_path, iut, "test_ipv6_urls")
    assert verdicts["R197-IPV6-01"] == "fail"


@pytest.mark.slow
def test_unsupported_pics_items_are_not_applicable(tmp_path: Path, broken_coap: BrokenCoap) -> None:
    """Cases whose PICS item is false are N/A, never failed, even against a broken server."""
    iut = {"implementation": "no observe", "roles": {"coap-device": {"url": f"coap://[::1]:{broken_coap.port}"}},
           "pics": {"coap.observe": False, "coap.block2": False}}  # fmt: skip
    verdicts = run_suite(tmp_path, iut, "test_observe or test_block2")
    # Every case that selects an observe or Block2 case: plain observe, cancel by RST and by
    # GET, Block2, and the resilience case that re-observes after a device restart.
    coap = {k: v for k, v in verdicts.items() if k.startswith("R197-COAP")}
    assert coap == {"R197-COAP-11": "n/a", "R197-COAP-12": "n/a", "R197-COAP-13": "n/a",
                    "R197-COAP-25": "n/a"}  # fmt: skip
    # R197-RES-03 observes the reference devices through the reference gateway: the IUT's
    # PICS do not apply to it, so it runs.
    assert verdicts["R197-RES-03"] == "pass"


def test_an_invalid_iut_file_is_a_usage_error(tmp_path: Path) -> None:
    """A role the suite does not know is refused with a message naming it."""
    iut_file = tmp_path / "iut.yaml"
    iut_file.write_text("roles:\n  toaster:\n    url: http://[::1]:1\n")
    cmd = [sys.executable, "-m", "pytest", "conformance", "--iut", str(iut_file), "-q", "-k", "test_wkc",
           "--r197-report", str(tmp_path / "r"), "-p", "no:cacheprovider"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "toaster" in done.stdout + done.stderr


def test_shutil_has_mosquitto() -> None:
    """The fault tests need Debian's Mosquitto, which .ci/setup installs."""
    assert shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()


class RetainStrippingProxy:
    """A 'broker' in front of Mosquitto that clears the RETAIN flag of every PUBLISH it delivers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("::1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("::1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, strip: bool) -> None:
        buffer = b""
        try:
            while data := src.recv(65536):
                if not strip:
                    dst.sendall(data)
                    continue
                buffer += data
                found, used = wire.frames(buffer)
                whole = bytearray(buffer[:used])
                begins = 0
                for first, _start, end in found:
                    if first >> 4 == wire.PUBLISH:  # clear RETAIN (MQTT 3.3.1.3)
                        whole[begins] &= 0xFE
                    begins = end
                dst.sendall(bytes(whole))
                buffer = buffer[used:]
        except OSError:
            pass
        finally:
            src.close()
            dst.close()

    def close(self) -> None:
        self.server.close()


@pytest.mark.slow
def test_suite_fails_a_broker_that_loses_the_retain_flag(tmp_path: Path) -> None:
    """Retained messages delivered without RETAIN -> R197-MQTT-06 fail, while QoS 1 still passes."""
    broker = MosquittoBroker(port=free_port())
    broker.start()
    try:
        proxy = RetainStrippingProxy(broker.port)
        try:
            iut = {"implementation": "retain-stripping broker",
                   "roles": {"mqtt-broker": {"url": f"mqtt://[::1]:{proxy.port}"}}}  # fmt: skip
            verdicts = run_suite(tmp_path, iut, "test_retained or test_qos1")
        finally:
            proxy.close()
    finally:
        broker.close()
    assert verdicts["R197-MQTT-06"] == "fail"
    assert verdicts["R197-MQTT-04"] == "pass"
