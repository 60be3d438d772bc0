# ruff: noqa: E501  # IUT documents read best on one line
"""Issue 20: verdicts that hold up against implementations we did not write.

Each test runs the suite (a subprocess, as a user would) against a faulty implementation kept
here: implausible values, an upsert that drops entities, a lying NGSILD-Results-Count,
answers that do not decode, a device echoing wrong tokens, an empty-bodied wrong status; and
checks the cases *fail* (or are inconclusive) with the observed bytes in the reason, never
*error*, and that none runs past its deadline.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cbor2
import httpx
import pytest

from conformance.coap_raw import (
    ACCEPT,
    ACK,
    CON,
    CONTENT_FORMAT,
    OBSERVE,
    Message,
    decode,
    encode,
    uint,
)
from conformance.observed import excerpt, iut_cbor, iut_json
from conformance.plausible import implausible
from tests.conformance.test_catches_faults import (
    _V6Server,
    _WrongStatus,
    run_suite,
    serving,
)
from tests.conftest import ROOT, PlatformProcess


def results(tmp_path: Path) -> dict[str, list[tuple[str, str]]]:
    """{case id: [(verdict, detail), ...]} of the last run_suite in ``tmp_path``."""
    found: dict[str, list[tuple[str, str]]] = {}
    for r in json.loads((tmp_path / "report" / "report.json").read_text())["results"]:
        found.setdefault(r["id"], []).append((r["verdict"], r["detail"]))
    return found


class SenmlDevice:
    """A CoAP 'sensor' on [::1] answering every GET with ``json_pack`` (Accept 110 or none)
    or ``cbor_pack`` (Accept 112), the token echoed; a faulty device for the suite."""

    def __init__(self, json_pack: bytes, cbor_pack: bytes) -> None:
        self.packs = {110: json_pack, 112: cbor_pack}
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            request = decode(data)
            accept = request.option(ACCEPT)
            fmt = int.from_bytes(accept, "big") if accept is not None else 110
            answer = Message(ACK, 0x45, request.mid, request.token,
                             [(CONTENT_FORMAT, uint(fmt))], self.packs.get(fmt, b""))  # fmt: skip
            self.sock.sendto(encode(answer), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def device_iut(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    json_pack, cbor_pack = request.param
    device = SenmlDevice(json_pack, cbor_pack)
    yield {"implementation": "faulty SenML device",
           "roles": {"coap-device": {"url": f"coap://[::1]:{device.port}"}}}  # fmt: skip
    device.close()


FAHRENHEIT = [{"bn": "urn:dev:ow:r197-1:", "n": "temperature", "u": "Cel", "v": 71.6},
              {"n": "humidity", "u": "%RH", "v": 48.0}, {"n": "pressure", "u": "hPa", "v": 1013.2}]  # fmt: skip


@pytest.mark.parametrize(
    "device_iut",
    [(json.dumps(FAHRENHEIT).encode(),
      cbor2.dumps([{-2: "urn:dev:ow:r197-1:", 0: "temperature", 1: "Cel", 2: 71.6},
                   {0: "humidity", 1: "%RH", 2: 48.0}, {0: "pressure", 1: "hPa", 2: 1013.2}]))],
    indirect=True,
)  # fmt: skip
@pytest.mark.slow
def test_a_fahrenheit_temperature_labelled_cel_fails(
    tmp_path: Path, device_iut: dict[str, Any]
) -> None:
    """71.6 'Cel' (22 degrees Celsius in Fahrenheit) is outside the WMO air temperature
    extremes: R197-SENML-05 fails naming value and range, while the format cases pass."""
    verdicts = run_suite(
        tmp_path,
        device_iut,
        "test_payloads and (senml_json_valid or registered_units or plausible)",
    )
    assert verdicts["R197-SENML-01"] == "pass"
    assert verdicts["R197-SENML-03"] == "pass"
    assert verdicts["R197-SENML-05"] == "fail"
    ((_, detail),) = results(tmp_path)["R197-SENML-05"]
    assert "temperature = 71.6 Cel" in detail
    assert "-89.2..56.7 Cel" in detail
    assert "humidity" not in detail  # plausible
    assert "pressure" not in detail


@pytest.mark.parametrize(
    "device_iut", [(b'[{"n": "temperature", "u": "Cel", "v": 21.5', b"\x9f\xa1\x00")], indirect=True
)
@pytest.mark.slow
def test_answers_that_do_not_decode_fail_with_the_bytes(
    tmp_path: Path, device_iut: dict[str, Any]
) -> None:
    """A truncated JSON pack and CBOR that ends inside an indefinite array: the cases that
    decode them fail with the observed bytes (never a JSONDecodeError/CBORDecodeError error)."""
    verdicts = run_suite(
        tmp_path,
        device_iut,
        "test_senml_json_valid or test_cbor_equals_json or test_plausible or (test_coap and test_cbor)",
    )
    found = results(tmp_path)
    for case_id in ("R197-SENML-01", "R197-SENML-02", "R197-SENML-05", "R197-COAP-10"):
        assert verdicts[case_id] == "fail", found[case_id]
    assert 'is not JSON: b\'[{"n": "temperature"' in found["R197-SENML-01"][0][1]
    assert "is not CBOR: 9fa100" in found["R197-COAP-10"][0][1]


class Ngsild(http.server.BaseHTTPRequestHandler):
    """A 'platform' whose answers do not decode where a case reads them: its entities lack
    unitCode, its errors are HTML (labelled application/json), a create twice is 409 HTML."""

    created: ClassVar[set[str]] = set()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if doc["id"] in self.created:
            self._send(409, b"<html><body>Conflict</body></html>")
            return
        self.created.add(doc["id"])
        self._send(201, b"", {"Location": f"/ngsi-ld/v1/entities/{doc['id']}"})

    def do_GET(self) -> None:
        if "?" in self.path:  # a query: the q error case
            self._send(400, b"<html><body>Bad Request</body></html>")
            return
        entity_id = self.path.rsplit("/", 1)[1]
        body = {"id": entity_id, "type": "R197Room",
                "temperature": {"type": "Property", "value": 21.5, "observedAt": "2026-01-01T10:00:00Z"}}  # fmt: skip
        self._send(200, json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_non_json_errors_and_a_missing_unit_code_fail_not_error(tmp_path: Path) -> None:
    """HTML error bodies -> R197-NGSILD-02/-08 fail with the bytes; no unitCode -> -04 fails
    naming the member (KeyError before); the create case still passes."""
    with serving(_V6Server(("::1", 0), Ngsild)) as port:
        iut = {
            "implementation": "non-JSON platform",
            "roles": {"ngsild-platform": {"url": f"http://[::1]:{port}"}},
        }
        verdicts = run_suite(
            tmp_path, iut, "test_ngsild and (test_create or test_retrieve or test_q_error)"
        )
    found = results(tmp_path)
    assert verdicts["R197-NGSILD-01"] == "pass"
    for case_id in ("R197-NGSILD-02", "R197-NGSILD-04", "R197-NGSILD-08"):
        assert verdicts[case_id] == "fail", found[case_id]
    assert "<html><body>Conflict" in found["R197-NGSILD-02"][0][1]
    assert "no member 'unitCode' at $.temperature" in found["R197-NGSILD-04"][0][1]
    assert "is not JSON: b'<html><body>Bad Request" in found["R197-NGSILD-08"][0][1]


@pytest.mark.slow
def test_a_wrong_status_with_an_empty_body_names_both_statuses(tmp_path: Path) -> None:
    """A create answered 200 (empty body) instead of 201: the reason says so, not ''."""
    with serving(_V6Server(("::1", 0), _WrongStatus)) as port:
        iut = {
            "implementation": "200 platform",
            "roles": {"ngsild-platform": {"url": f"http://[::1]:{port}"}},
        }
        run_suite(tmp_path, iut, "test_ngsild and (test_create or test_batch_upsert)")
    found = results(tmp_path)
    assert found["R197-NGSILD-01"] == [
        ("fail", "expected 201, got 200 to POST /ngsi-ld/v1/entities: <empty body>")
    ]
    ((verdict, detail),) = found["R197-NGSILD-10"]
    assert (verdict, detail) == (
        "fail",
        "expected 201, got 200 to POST /ngsi-ld/v1/entityOperations/upsert: <empty body>",
    )


class Dropping(http.server.BaseHTTPRequestHandler):
    """In front of our platform: ``fault`` "drop" leaves out every fifth entity of a batch
    upsert and answers with the platform's status; "count" reports the page's length as
    NGSILD-Results-Count instead of the total."""

    upstream = ""
    fault = ""
    seen = 0

    def _forward(self, body: bytes | None) -> None:
        answer = httpx.request(self.command, self.upstream + self.path, content=body, timeout=10,
                               headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})  # fmt: skip
        self.send_response(answer.status_code)
        for key in ("Content-Type", "Location", "NGSILD-Results-Count"):
            if key in answer.headers:
                value = answer.headers[key]
                if key == "NGSILD-Results-Count" and self.fault == "count":
                    value = str(len(answer.json()))
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.fault == "drop" and "/entityOperations/upsert" in self.path:
            kept = []
            for entity in json.loads(body):
                type(self).seen += 1
                if type(self).seen % 5:
                    kept.append(entity)
            body = json.dumps(kept).encode()
        self._forward(body)

    def do_GET(self) -> None:
        self._forward(None)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def platform() -> Iterator[PlatformProcess]:
    process = PlatformProcess()
    process.start()
    yield process
    process.stop()


@pytest.mark.parametrize(("fault", "fails", "passes"), [("drop", "R197-NGSILD-10", "R197-NGSILD-86"),
                                                        ("count", "R197-NGSILD-86", "R197-NGSILD-10")])  # fmt: skip
@pytest.mark.slow
def test_a_platform_that_drops_entities_or_miscounts_fails(
    tmp_path: Path, platform: PlatformProcess, fault: str, fails: str, passes: str
) -> None:
    """Every fifth upserted entity dropped behind a success status -> R197-NGSILD-10 fails
    (it reads each back); a count of the page, not the matches -> R197-NGSILD-86 fails."""
    handler = type("Faulty", (Dropping,), {"upstream": platform.base, "fault": fault, "seen": 0})
    with serving(_V6Server(("::1", 0), handler)) as port:
        iut = {
            "implementation": f"platform that {fault}s",
            "roles": {"ngsild-platform": {"url": f"http://[::1]:{port}"}},
        }
        verdicts = run_suite(
            tmp_path, iut, "test_ngsild and (test_batch_upsert or test_results_count)"
        )
    found = results(tmp_path)
    assert verdicts[fails] == "fail", found[fails]
    assert verdicts[passes] == "pass", found[passes]
    if fault == "drop":
        assert "2 of 10 upserted entities not stored" in found[fails][0][1]
    else:
        assert "NGSILD-Results-Count 2, 5 entities" in found[fails][0][1]


class WrongTokens:
    """A CoAP device that accepts an observation (2.05 with Observe, the right token) and
    then notifies every 0.2 s with another token (RFC 7252 5.3.2 broken)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.port = self.sock.getsockname()[1]
        self.observers: list[tuple[Any, ...]] = []
        threading.Thread(target=self._serve, daemon=True).start()
        threading.Thread(target=self._notify, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            request = decode(data)
            if request.code == 0:
                continue  # an ACK or RST of a notification
            options = [(CONTENT_FORMAT, uint(110))]
            if request.option(OBSERVE) == b"":
                options.append((OBSERVE, uint(1)))
                self.observers.append(addr)
            self.sock.sendto(
                encode(Message(ACK, 0x45, request.mid, request.token, options, b"[]")), addr
            )

    def _notify(self) -> None:
        mid, seq = 1000, 2
        while True:
            time.sleep(0.2)
            for addr in list(self.observers):
                mid, seq = mid + 1, seq + 1
                note = Message(
                    CON,
                    0x45,
                    mid,
                    b"\xee\xee",
                    [(OBSERVE, uint(seq)), (CONTENT_FORMAT, uint(110))],
                    b"[]",
                )
                try:
                    self.sock.sendto(encode(note), addr)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_observe_cases_end_when_the_device_echoes_wrong_tokens(tmp_path: Path) -> None:
    """The order and cancel-by-GET cases used to loop forever on such a device: they fail
    naming the wrong token, within the case deadline (PIXIT case.deadline_s = 4 s here)."""
    device = WrongTokens()
    try:
        iut = {"implementation": "wrong-token device", "pixit": {"case.deadline_s": 4},
               "roles": {"coap-device": {"url": f"coap://[::1]:{device.port}"}}}  # fmt: skip
        began = time.monotonic()
        verdicts = run_suite(tmp_path, iut, "test_notification_order or test_observe_cancel_by_get")
        took = time.monotonic() - began
    finally:
        device.close()
    found = results(tmp_path)
    assert verdicts["R197-COAP-24"] == "fail", found
    assert verdicts["R197-COAP-25"] == "fail", found
    for case_id in ("R197-COAP-24", "R197-COAP-25"):
        ((_, detail),) = found[case_id]
        assert "0 of " in detail, detail
        assert "with other tokens ['eeee']" in detail, detail
    # Not a timing assertion on the IUT: a bound on the suite, which looped for ever before.
    assert took < 120, f"the run took {took:.0f} s"


SLEEPER = """
import time
from conformance.model import case

@case("R197-COAP-98", "sleeps", verifies=["RFC7252-4.2"], theme="resilience")
def test_sleeps() -> None:
    time.sleep(120)  # an IUT that never answers, whatever the helper waits on

@case("R197-COAP-99", "bare assert", verifies=["RFC7252-4.2"], theme="resilience")
def test_bare_assert() -> None:
    status = 200
    assert status == 201, ""
"""


@pytest.mark.slow
def test_every_case_has_an_overall_deadline_and_a_non_empty_reason(tmp_path: Path) -> None:
    """A case still waiting at case.deadline_s ends inconclusive saying so; an assertion
    without a message gets pytest's explanation as its reason (never an empty one)."""
    (tmp_path / "test_sleeper.py").write_text(SLEEPER)
    iut = tmp_path / "iut.yaml"
    iut.write_text(json.dumps({"implementation": "sleeper", "pixit": {"case.deadline_s": 1.5}}))
    cmd = [sys.executable, "-m", "pytest", "-p", "conformance.conftest", str(tmp_path / "test_sleeper.py"),
           "--iut", str(iut), "--r197-report", str(tmp_path / "report"), "-q", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path)]  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    assert time.monotonic() - began < 60, done.stdout
    found = results(tmp_path)
    assert found["R197-COAP-98"] == [
        (
            "inconclusive",
            "the case did not end within its deadline of 1.5 s (PIXIT case.deadline_s)",
        )
    ], done.stdout
    ((verdict, detail),) = found["R197-COAP-99"]
    assert verdict == "fail", detail
    assert "assert 200 == 201" in detail, detail


@pytest.mark.parametrize(
    ("name", "unit", "value", "plausible"),
    [
        ("urn:dev:ow:1:temperature", "Cel", 56.7, True),
        ("urn:dev:ow:1:temperature", "Cel", 71.6, False),  # 22 Cel in Fahrenheit
        ("urn:dev:ow:1:temperature", "K", 295.15, True),
        ("urn:dev:ow:1:temperature", "K", 22.0, False),  # Celsius labelled K
        ("urn:dev:ow:1:air_temperature", "Cel", -90.0, False),
        ("weather-1/pressure", "Pa", 101325.0, True),
        ("weather-1/pressure", "hPa", 101325.0, False),  # Pa labelled hPa
        ("urn:dev:x:relativeHumidity", "/", 0.45, True),
        ("urn:dev:x:humidity", "%RH", 101.0, False),
        ("urn:dev:x:LAeq", "dB", 55.0, True),
        ("urn:dev:x:LAeq", "dB", 5500.0, False),
        ("urn:dev:x:pm25", "kg/m3", 15e-9, True),
        ("urn:dev:x:pm25", "kg/m3", 15.0, False),  # ug/m3 labelled kg/m3
        ("urn:dev:x:boilerTemperature", "Cel", 90.0, True),  # unknown name: not checked
        ("urn:dev:x:temperature", "degF", 71.6, True),  # unknown unit: not checked
    ],
)
def test_plausible_ranges(name: str, unit: str, value: float, plausible: bool) -> None:
    """The table of conformance/plausible.py: bounds, unit factors and offsets, unknowns."""
    why = implausible(name, unit, value)
    assert (why is None) == plausible, why
    if why is not None:
        assert f"{value:g} {unit}" in why
        assert ".." in why  # the range is named


def test_iut_data_is_a_fail_not_an_exception_of_ours() -> None:
    """observed.py: what the IUT sent fails as an AssertionError naming the bytes or the
    member; the classes stay what callers may catch (ValueError, KeyError, IndexError)."""
    with pytest.raises(AssertionError, match=r"is not JSON: b'<html>'"):
        iut_json(b"<html>")
    with pytest.raises(ValueError, match="is not CBOR: 9f"):
        iut_cbor(b"\x9f")
    doc = iut_json(b'{"temperature": {"value": 21.5}, "list": [1]}')
    assert doc == {"temperature": {"value": 21.5}, "list": [1]}
    with pytest.raises(AssertionError, match=r"no member 'unitCode' at \$\.temperature"):
        doc["temperature"]["unitCode"]
    with pytest.raises(KeyError):
        doc["missing"]
    with pytest.raises(IndexError, match=r"1 item\(s\) at \$\.list, no item 3"):
        doc["list"][3]
    assert doc.get("missing") is None
    assert excerpt(b"") == "<empty body>"
    assert excerpt(b"x" * 500).endswith("... (500 bytes)")


@pytest.mark.slow
def test_a_broker_that_never_sends_connack_fails_with_a_reason(tmp_path: Path) -> None:
    """A 'broker' that accepts the TCP connection and stays silent: R197-MQTT-01 fails with
    "no CONNACK" (MQTT-3.2.0-1), not an error with queue.Empty's empty message."""
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.bind(("::1", 0))
    server.listen(8)  # the kernel completes the handshakes; nobody ever reads or writes
    try:
        iut = {"implementation": "silent broker", "pixit": {"case.deadline_s": 4},
               "roles": {"mqtt-broker": {"url": f"mqtt://[::1]:{server.getsockname()[1]}"}}}  # fmt: skip
        verdicts = run_suite(tmp_path, iut, "test_mqtt_broker and test_connect_311")
    finally:
        server.close()
    found = results(tmp_path)
    assert verdicts["R197-MQTT-01"] == "fail", found
    ((_, detail),) = found["R197-MQTT-01"]
    assert detail.startswith("no CONNACK from [::1]:"), detail
