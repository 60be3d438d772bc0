"""The InfluxDB sink end to end: a real platform process writing to a real VictoriaMetrics
(Debian's victoria-metrics, which takes influxdb-client's /api/v2/write) on [::1].

Nothing here measures speed (benchmarks/influx.py does): "ingest is not blocked" is checked
as the API answering every write normally while the server is away."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from city_platform.influx.sink import InfluxConfig, InfluxSink
from testbed.victoria import Victoria
from tests.conftest import PlatformProcess, free_port

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def readings(first: int, count: int, *, tenant_prefix: str = "w") -> list[dict[str, object]]:
    """``count`` readings of two weather stations, one second apart from reading ``first``."""
    out: list[dict[str, object]] = []
    for i in range(first, first + count):
        at = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        out.append({
            "id": f"urn:ngsi-ld:WeatherObserved:{tenant_prefix}{i % 2}",
            "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": 10 + i / 10, "unitCode": "CEL",
                            "observedAt": at},
            "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"},
        })  # fmt: skip
    return out


def send(platform: PlatformProcess, entities: list[dict[str, object]], tenant: str = "") -> None:
    """One batch upsert per reading: each is one stored instance (the API must answer 2xx)."""
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    with httpx.Client(base_url=platform.api, headers=headers, timeout=10) as client:
        for entity in entities:
            answer = client.post("/entityOperations/upsert", json=[entity])
            assert answer.status_code in (201, 204), answer.text


def influx_health(platform: PlatformProcess) -> dict[str, object]:
    health = httpx.get(platform.base + "/health", timeout=5).json()
    influx: dict[str, object] = health["influx"]
    return influx


def wait_drained(platform: PlatformProcess, within: float = 40) -> dict[str, object]:
    """/health's influx block once the outbox is empty (a bound, not a timed assertion)."""
    deadline = time.monotonic() + within
    while True:
        status = influx_health(platform)
        if status["outbox"] == 0:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox not drained: {status}")
        time.sleep(0.1)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Victoria]:
    vm = Victoria(free_port(), tmp_path / "vm")
    yield vm
    vm.process.close()


def sink_platform(tmp_path: Path, vm_port: int, *, port: int | None = None) -> PlatformProcess:
    token = tmp_path / "influx.token"
    token.write_text("unused-by-victoria\n")
    return PlatformProcess(
        db=str(tmp_path / "platform.db"),
        port=port,
        influx=["--influx", f"http://[::1]:{vm_port}", "--influx-org", "r197",
                "--influx-bucket", "city", "--influx-token-file", str(token)],
    )  # fmt: skip


def test_readings_arrive_with_their_tags_values_and_times(
    tmp_path: Path, victoria: Victoria
) -> None:
    victoria.process.start()
    platform = sink_platform(tmp_path, victoria.port)
    platform.start()
    try:
        send(platform, readings(0, 6))
        send(platform, readings(100, 2, tenant_prefix="t"), tenant="north")
        status = wait_drained(platform)
    finally:
        platform.stop()
        platform.process.close()
    assert status["sent"] == 8
    assert status["bucket"] == "city"
    series = {
        (s["metric"]["entity_id"], s["metric"].get("tenant")): s
        for s in victoria.export('{__name__="WeatherObserved_temperature"}')
    }
    assert set(series) == {
        ("urn:ngsi-ld:WeatherObserved:w0", None),
        ("urn:ngsi-ld:WeatherObserved:w1", None),
        ("urn:ngsi-ld:WeatherObserved:t0", "north"),
        ("urn:ngsi-ld:WeatherObserved:t1", "north"),
    }
    w0 = series[("urn:ngsi-ld:WeatherObserved:w0", None)]
    assert w0["metric"]["unit"] == "CEL"
    assert w0["values"] == [10.0, 10.2, 10.4]  # readings 0, 2, 4
    t0_ms = int(T0.timestamp() * 1000)
    assert w0["timestamps"] == [t0_ms, t0_ms + 2000, t0_ms + 4000]  # observedAt
    # Relationships are no time series: only the temperature field was written.
    assert {s["metric"]["__name__"] for s in victoria.export()} == {"WeatherObserved_temperature"}
    # The PromQL a Grafana panel would use.
    found = victoria.query('last_over_time(WeatherObserved_temperature{tenant="north"}[10y])')
    assert sorted(float(r["value"][1]) for r in found) == [20.0, 20.1]


@pytest.mark.slow
def test_an_outage_loses_nothing_across_a_platform_restart(
    tmp_path: Path, victoria: Victoria
) -> None:
    """VictoriaMetrics down while readings arrive -> the outbox holds them, also through a
    platform restart -> VictoriaMetrics up -> every reading arrives, once."""
    port = free_port()
    platform = sink_platform(tmp_path, victoria.port, port=port)
    platform.start()
    try:
        send(platform, readings(0, 30))  # the API answers normally with the server away
        status = influx_health(platform)
        assert status["outbox"] == 30
        assert status["sent"] == 0
        time_to_fail = time.monotonic() + 20
        while influx_health(platform)["failures"] == 0 and time.monotonic() < time_to_fail:
            time.sleep(0.1)
        assert influx_health(platform)["lastError"]  # it tried and says why it failed
    finally:
        log = platform.stop()
    assert log.count("unreachable") == 1  # logged once, not per retry
    restarted = sink_platform(tmp_path, victoria.port, port=port)
    restarted.start()
    try:
        assert influx_health(restarted)["outbox"] == 30  # durable: the outbox file kept them
        send(restarted, readings(30, 10))
        assert influx_health(restarted)["outbox"] == 40
        victoria.process.start()
        status = wait_drained(restarted)
        send(restarted, readings(40, 5))  # and after the outage, as usual
        status = wait_drained(restarted)
    finally:
        log = restarted.stop()
        restarted.process.close()
        platform.process.close()
    assert status["sent"] == 45
    assert "is back" in log
    assert victoria.samples('{__name__="WeatherObserved_temperature"}') == 45
    values = sorted(
        v for s in victoria.export('{__name__="WeatherObserved_temperature"}') for v in s["values"]
    )
    assert values == [pytest.approx(10 + i / 10) for i in range(45)]


def test_an_unreadable_token_file_stops_the_platform_with_a_message(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests.conftest import ROOT  # noqa: PLC0415

    missing = tmp_path / "no-such.token"
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "platform", "--port", str(free_port()), "--db",
         ":memory:", "--influx", "http://[::1]:8086", "--influx-token-file", str(missing)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--influx-token-file" in done.stderr
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr


class _Refusing(http.server.BaseHTTPRequestHandler):
    """InfluxDB's answer to a malformed batch (HTTP 400 ``invalid``), which VictoriaMetrics
    never gives (it answers 204 and drops bad lines): a batch holding "bad" is refused."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(body)
        refused = b"bad" in body
        self.send_response(400 if refused else 204)
        payload = b'{"code":"invalid","message":"unable to parse"}' if refused else b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def test_a_batch_refused_as_malformed_is_dropped_and_the_rest_goes_on(tmp_path: Path) -> None:
    """A 400 would block the outbox for good if retried: the batch is counted as rejected,
    dropped, and the next one is sent."""
    server = _Server6(("::1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = InfluxConfig(
        url=f"http://[::1]:{server.server_address[1]}", org="r197", bucket="city",
        token="t", outbox=str(tmp_path / "outbox"),
    )  # fmt: skip

    async def run() -> dict[str, object]:
        sink = InfluxSink(config)
        await sink.start()
        sink.add(['m f="bad" 1'])
        sink.add(["m f=1 2", "m f=2 3"])
        deadline = time.monotonic() + 20
        while sink.status()["outbox"] and time.monotonic() < deadline:  # noqa: ASYNC110  # polls the public status
            await asyncio.sleep(0.05)
        status = sink.status()
        await sink.stop()
        return status

    try:
        status = asyncio.run(run())
    finally:
        server.shutdown()
        server.server_close()
    assert status["outbox"] == 0
    assert status["rejected"] == 1
    assert status["sent"] == 2
    assert _Refusing.received[-1] == b"m f=1 2\nm f=2 3"


@pytest.mark.slow
def test_a_platform_on_postgresql_sends_its_readings_too(
    tmp_path: Path, victoria: Victoria, pg_database: str
) -> None:
    """The sink wraps any backend: the same readings through a PostgreSQL platform."""
    victoria.process.start()
    token = tmp_path / "influx.token"
    token.write_text("t\n")
    platform = PlatformProcess(
        db=pg_database,
        influx=["--influx", victoria.url, "--influx-token-file", str(token),
                "--influx-outbox", str(tmp_path / "outbox.db")],
    )  # fmt: skip
    platform.start()
    try:
        send(platform, readings(0, 4))
        status = wait_drained(platform)
        assert httpx.get(platform.base + "/health").json()["storage"] == "PostgresStorage"
    finally:
        platform.stop()
        platform.process.close()
    assert status["sent"] == 4
    found = victoria.export('{__name__="WeatherObserved_temperature"}')
    assert sorted(v for s in found for v in s["values"]) == [10.0, 10.1, 10.2, 10.3]


def test_an_outbox_that_cannot_be_written_loses_points_but_not_the_write(tmp_path: Path) -> None:
    """The storage has committed; an outbox failure (here: a read-only outbox connection, as
    a full disk would refuse) is counted as lost and logged, and raises nothing."""
    config = InfluxConfig(
        url=f"http://[::1]:{free_port()}", org="r197", bucket="city", token="t",
        outbox=str(tmp_path / "outbox"),
    )  # fmt: skip

    async def run() -> tuple[dict[str, object], dict[str, object]]:
        sink = InfluxSink(config)
        await sink.start()
        assert sink.outbox is not None
        sink.outbox._db.execute("PRAGMA query_only=ON")  # refuse every write
        sink.add(["m f=1 1", "m f=2 2"])
        failing = sink.status()
        sink.outbox._db.execute("PRAGMA query_only=OFF")
        sink.add(["m f=3 3"])
        recovered = sink.status()
        await sink.stop()
        return failing, recovered

    failing, recovered = asyncio.run(run())
    assert (failing["lost"], failing["outbox"]) == (2, 0)
    assert (recovered["lost"], recovered["outbox"]) == (2, 1)
