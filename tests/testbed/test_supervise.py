"""`testbed up` supervises: a killed part comes back and no reading is lost (real processes).

The city is the secure default: the observer reads over TLS with its own password and the
history is read with the reader token `testbed up` minted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import httpx
import pytest

from testbed.city_security import CitySecurity
from testbed.processes import free_port
from tests.conftest import ROOT

SCENARIO = """
seed = 11
[[groups]]
kind = "noise"
count = 3
protocol = "mqtt"
format = "senml-json"
interval = 0.2
qos = 1
"""


class Up:
    """`testbed up` as a child process whose output is read line by line as it comes."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.data = tmp / "data"
        scenario = tmp / "noise.toml"
        scenario.write_text(SCENARIO)
        self.ports = {
            "--platform-port": free_port(),
            "--broker-port": free_port(),
            "--rd-port": free_port("udp"),
            "--gateway-coap-port": free_port("udp"),
            "--gateway-http-port": free_port(),
            "--dashboard-port": free_port(),
        }
        cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(scenario)]
        cmd += ["--data-dir", str(self.data)]
        for option, port in self.ports.items():
            cmd += [option, str(port)]
        cmd += extra
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.api = f"http://[::1]:{self.ports['--platform-port']}/ngsi-ld/v1"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, within: float = 90) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[-1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line with {text!r} in the output:\n{self.output}")

    def pid_of(self, marker: str) -> int:
        """The pid of the city's child process whose command line holds ``marker``."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and str(self.data) in cmdline:
                return int(entry.name)
        raise AssertionError(f"no process with {marker!r} running")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    city = Up(tmp_path)
    try:
        yield city
    finally:
        city.stop()


def _iso_ms(t: float) -> str:
    """observedAt as the platform stores it: UTC, milliseconds (truncated), 'Z'."""
    moment = datetime.fromtimestamp(t, UTC)
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _observe(
    broker_port: int, security: CitySecurity, seen: dict[str, set[str]], stop: asyncio.Event
) -> None:
    """Record every reading the devices publish, as the broker's read-only observer sees it."""
    tls = ssl.create_default_context(cafile=security.credentials.ca_file)
    async with aiomqtt.Client(
        "::1", broker_port, username="observer", password=security.observer_password(),
        identifier="observer", tls_context=tls,
    ) as client:  # fmt: skip
        await client.subscribe("city/+/+/up/#", qos=1)
        async for message in client.messages:
            device = str(message.topic).split("/")[2]
            for record in json.loads(bytes(message.payload)):  # type: ignore[arg-type]
                if "bt" in record:
                    seen[device].add(_iso_ms(record["bt"]))
            if stop.is_set():
                return


def _history(api: str, device: str, token: str) -> set[str]:
    r = httpx.get(
        f"{api}/temporal/entities/urn:ngsi-ld:NoiseLevelObserved:{device}",
        params={"attrs": "LAeq", "lastN": "100000"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if r.status_code != 200:
        return set()
    return {i["observedAt"] for i in r.json().get("LAeq", [])}


@pytest.mark.slow
async def test_city_survives_kill_9_of_gateway_and_platform_without_losing_a_reading(
    up: Up,
) -> None:
    """kill -9 of the gateway, then of the platform: both come back, every reading arrives."""
    await asyncio.to_thread(up.wait_for_line, "Ctrl-C stops the city")
    seen: dict[str, set[str]] = defaultdict(set)
    stop = asyncio.Event()
    security = CitySecurity.at(up.data)
    observer = asyncio.create_task(_observe(up.ports["--broker-port"], security, seen, stop))
    await asyncio.sleep(3)

    os.kill(up.pid_of("gateway-queue.db"), signal.SIGKILL)
    await asyncio.to_thread(up.wait_for_line, "gateway is back")
    await asyncio.sleep(2)
    os.kill(up.pid_of("platform.db"), signal.SIGKILL)
    await asyncio.to_thread(up.wait_for_line, "platform is back")
    await asyncio.sleep(3)
    stop.set()
    await asyncio.wait_for(observer, 10)
    published = {device: set(times) for device, times in seen.items()}

    assert sorted(published) == ["noise-0001", "noise-0002", "noise-0003"]
    missing: dict[str, set[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        token = security.token("reader")
        stored = {d: await asyncio.to_thread(_history, up.api, d, token) for d in published}
        missing = {d: published[d] - stored[d] for d in published if published[d] - stored[d]}
        if not missing:
            break
        await asyncio.sleep(1)
    assert not missing, {d: sorted(m)[:5] for d, m in missing.items()}
    assert all(len(times) > 30 for times in published.values()), published
    summary = up.wait_for_line("platform restarted 1x")
    assert "gateway restarted 1x" in summary
    assert up.stop() == 0, up.output
    assert "city stopped" in up.output


def _run_up(
    tmp: Path, *args: str, timeout: float = 120, scenario_text: str = SCENARIO
) -> subprocess.CompletedProcess[str]:
    scenario = tmp / "noise.toml"
    scenario.write_text(scenario_text)
    cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(scenario)]
    cmd += ["--data-dir", str(tmp / "data"), "--duration", "1"]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _free_ports() -> list[str]:
    return [
        *("--platform-port", str(free_port()), "--broker-port", str(free_port())),
        *("--rd-port", str(free_port("udp")), "--gateway-coap-port", str(free_port("udp"))),
        *("--gateway-http-port", str(free_port()), "--dashboard-port", str(free_port())),
    ]


def _with(args: list[str], option: str, port: int) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = str(port)
    return out


@pytest.mark.parametrize(
    ("option", "transport", "named"),
    [
        ("--platform-port", "tcp", "(platform)"),
        ("--broker-port", "tcp", "(MQTT broker)"),
        ("--rd-port", "udp", "(resource directory)"),
    ],
)
def test_a_taken_port_is_named_before_anything_starts(
    tmp_path: Path, option: str, transport: str, named: str
) -> None:
    """A port in use stops `testbed up` at once with one line naming it and its option."""
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET6, kind) as taken:
        taken.bind(("::1", 0))
        if transport == "tcp":
            taken.listen()
        port = taken.getsockname()[1]
        done = _run_up(tmp_path, *_with(_free_ports(), option, port))
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("testbed up:")]
    assert errors == [
        f"testbed up: {transport.upper()} port {port} on [::1] {named} is already in use; "
        f"choose another with {option}"
    ], done.stderr
    assert "broker    " not in done.stderr  # nothing was started
    assert not (tmp_path / "data" / "logs").exists()


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    """--platform-port 99999 is an error, not silently replaced by another port."""
    done = _run_up(tmp_path, *_with(_free_ports(), "--platform-port", 99999))
    assert done.returncode == 2
    assert "'99999' is not a port number (1-65535)" in done.stderr


@pytest.mark.slow
def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    """When the platform cannot start, the broker that had started is stopped too."""
    (tmp_path / "data" / "platform.db").mkdir(parents=True)  # a directory: SQLite cannot open it
    ports = _free_ports()
    done = _run_up(tmp_path, *ports)
    assert done.returncode == 1, done.stderr
    assert "broker    mosquitto" in done.stderr
    assert "testbed up: platform exited with" in done.stderr
    assert "city stopped" in done.stderr
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(tmp_path) in cmdline:
                leftovers.append(cmdline.replace("\0", " "))
    assert leftovers == []
    broker_port = int(ports[ports.index("--broker-port") + 1])
    with pytest.raises(OSError):
        socket.create_connection(("::1", broker_port), timeout=1).close()


@pytest.mark.slow
def test_the_summary_counts_devices_whose_readings_arrive(tmp_path: Path) -> None:
    """'online' counts devices heard from recently (a connected device that sends nothing is
    not online); the rate is over a window, not one poll."""
    silent = '[[groups]]\nkind = "noise"\ncount = 1\nprotocol = "mqtt"\nprefix = "mute-"\n'
    silent += "interval = 0.2\nfaults = { dropout = 1.0 }\n"
    done = _run_up(tmp_path, *_free_ports(), "--duration", "12", scenario_text=SCENARIO + silent)
    assert done.returncode == 0, done.stderr
    assert "devices   4 from" in done.stderr
    last = [line for line in done.stderr.splitlines() if line.startswith("devices online")][-1]
    assert last.startswith("devices online 3/4 |"), done.stderr
    rate = float(last.split("readings/s")[1].split("|")[0])
    assert 10 <= rate <= 20, last  # 3 devices, one reading each 0.2 s: 15/s


@pytest.mark.slow
def test_with_no_restart_a_dead_part_stops_the_city(up_no_restart: Up) -> None:
    """--no-restart: the gateway killed, the city stops with status 1 and says why."""
    up_no_restart.wait_for_line("Ctrl-C stops the city")
    os.kill(up_no_restart.pid_of("gateway-queue.db"), signal.SIGKILL)
    up_no_restart.proc.wait(timeout=60)
    assert up_no_restart.proc.returncode == 1, up_no_restart.output
    assert "testbed up: gateway exited with -9; see " in up_no_restart.output
    assert "city stopped" in up_no_restart.output


@pytest.fixture
def up_no_restart(tmp_path: Path) -> Iterator[Up]:
    city = Up(tmp_path, "--no-restart")
    try:
        yield city
    finally:
        city.stop()
