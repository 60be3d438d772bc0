"""Lab 09's path end to end: a domain of the scenario's own ([[kinds]]) plus a gateway profile
from a directory (`testbed up --profiles DIR`) reach the platform with no package edit.

Real Mosquitto (TLS), platform, RD, gateway and devices, started by `testbed up` on free ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

LAB = ROOT / "docs" / "labs" / "code" / "09"


@pytest.mark.slow
def test_a_scenario_kind_with_a_profiles_dir_becomes_crowd_flow_observed(tmp_path: Path) -> None:
    ports = [free_port(), free_port(), free_port("udp"), free_port("udp"), free_port(), free_port()]
    cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(LAB / "crowd-city.toml")]
    cmd += ["--profiles", str(LAB / "profiles"), "--data-dir", str(tmp_path / "data")]
    for option, port in zip(
        ("--platform-port", "--broker-port", "--rd-port", "--gateway-coap-port",
         "--gateway-http-port", "--dashboard-port"), ports, strict=True,
    ):  # fmt: skip
        cmd += [option, str(port)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    api = f"http://[::1]:{ports[0]}/ngsi-ld/v1"
    token = tmp_path / "data" / "security" / "tokens" / "reader.jwt"
    found: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 90
        online = False  # `testbed up` counts every device as online
        while time.monotonic() < deadline and not (online and len(found) == 3):
            time.sleep(0.5)
            online = any("devices online 5/5" in line for line in lines)
            if proc.poll() is not None:
                break
            if not token.exists():
                continue
            try:
                r = httpx.get(
                    f"{api}/entities", params={"type": "CrowdFlowObserved"},
                    headers={"Authorization": f"Bearer {token.read_text().strip()}"},
                )  # fmt: skip
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                found = [e for e in r.json() if "averageCrowdSpeed" in e]
        assert len(found) == 3, "".join(lines)
        assert online, "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ids = sorted(str(e["id"]) for e in found)
    assert ids == [f"urn:ngsi-ld:CrowdFlowObserved:crowd-000{n}" for n in (1, 2, 3)]
    for entity in found:
        people, speed, headway = (
            entity[a] for a in ("peopleCount", "averageCrowdSpeed", "averageHeadwayTime")
        )
        assert isinstance(people, dict)
        assert isinstance(speed, dict)
        assert isinstance(headway, dict)
        assert (people["unitCode"], speed["unitCode"], headway["unitCode"]) == ("C62", "KMH", "SEC")
        assert float(people["value"]).is_integer()
        assert 0 < speed["value"] <= 3 * 3.6  # m/s from the device, km/h on the platform


def test_up_gives_its_profiles_dir_to_the_gateway(tmp_path: Path) -> None:
    """`testbed up --profiles DIR` -> `testbed gateway --profiles DIR` -> GatewayConfig."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.gateway_cmd import gateway_config  # noqa: PLC0415
    from testbed.settings import load_settings  # noqa: PLC0415
    from testbed.up import layout_of  # noqa: PLC0415

    argv = ["up", "--data-dir", str(tmp_path), "--profiles", str(LAB / "profiles")]
    gateway = layout_of(build_parser().parse_args(argv), tmp_path, "pw").gateway()
    at = gateway.argv.index("--profiles")
    assert gateway.argv[at + 1] == str(LAB / "profiles")
    args = build_parser().parse_args(gateway.argv[gateway.argv.index("gateway") :])
    config = gateway_config(args, load_settings(None))
    assert config.profiles_dir == LAB / "profiles"
    plain = layout_of(build_parser().parse_args(argv[:3]), tmp_path, "pw").gateway()
    assert "--profiles" not in plain.argv


def test_up_without_the_profile_of_a_scenario_kind_stops_before_starting(tmp_path: Path) -> None:
    """Else the gateway would refuse every crowd reading (unknown-device) in a running city."""
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "up", "--scenario", str(LAB / "crowd-city.toml"),
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "testbed up: no gateway profile for the device kind(s) crowd: " in done.stderr
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_the_dashboard_shows_the_types_of_the_extra_profiles(tmp_path: Path) -> None:
    """The web dashboard subscribes to the types it is given: a lab 09 domain's type too."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.up import layout_of  # noqa: PLC0415

    argv = ["up", "--data-dir", str(tmp_path), "--profiles", str(LAB / "profiles")]
    dashboard = layout_of(build_parser().parse_args(argv), tmp_path, "pw").dashboard_part().argv
    types = [dashboard[i + 1] for i, arg in enumerate(dashboard) if arg == "--type"]
    assert "CrowdFlowObserved" in types
    assert {"AgriParcelRecord", "IndoorEnvironmentObserved", "WeatherObserved"} <= set(types)
    plain = layout_of(build_parser().parse_args(argv[:3]), tmp_path, "pw").dashboard_part().argv
    assert "--type" not in plain
