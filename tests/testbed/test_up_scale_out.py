"""``testbed up --gateways 2 --platforms 2``: a secure city with two gateways in one MQTT 5
shared subscription and two platforms on one (throw-away) PostgreSQL database, as real
processes; and the command lines it builds (StackLayout)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import httpx
import pytest

from testbed.cli import build_parser
from testbed.parts import ROOT
from testbed.processes import PortClaim, free_port
from testbed.summary import Summary
from testbed.up import layout_of

SCENARIO = """\
seed = 19
[endpoints]
coap_base_port = {coap}
[[groups]]
kind = "noise"
count = 4
protocol = "mqtt"
mqtt_version = "5"
format = "senml-json"
interval = 0.5
[[groups]]
kind = "weather"
count = 1
protocol = "coap-push"
format = "senml-cbor"
interval = 1
"""
FORWARDED = re.compile(r"^r197_gateway_forwarded_total (\S+)$", re.M)


def two_free(transport: Literal["tcp", "udp"] = "tcp") -> int:
    """A port that is free, and the next one too (part k listens on the base + k - 1)."""
    for _ in range(50):
        port = free_port(transport)
        if port < 65535 and not PortClaim("next", port + 1, transport, "::1").in_use():
            return port
    raise AssertionError("no two free ports in a row")


def test_layout_spreads_gateways_over_platforms(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["up", "--data-dir", str(tmp_path), "--gateways", "3", "--platforms", "2",
         "--db", "postgresql://city@[::1]:5432/city", "--insecure"]
    )  # fmt: skip
    layout = layout_of(args, tmp_path, "lab-password")
    specs = {s.name: s for s in layout.specs()}
    assert [n for n in specs if n.startswith(("platform", "gateway"))] == [
        "platform", "platform-2", "gateway", "gateway-2", "gateway-3",
    ]  # fmt: skip
    for name in ("platform", "platform-2"):
        argv = specs[name].argv
        assert argv[argv.index("--db") + 1] == "postgresql://city@[::1]:5432/city"
    base = layout.ports.platform
    wanted = {"gateway": base, "gateway-2": base + 1, "gateway-3": base}  # round-robin
    for name, port in wanted.items():
        argv = specs[name].argv
        assert argv[argv.index("--platform") + 1] == f"http://[::1]:{port}"
    for k in (2, 3):
        spec = specs[f"gateway-{k}"]
        argv = spec.argv
        assert argv[argv.index("--client-id") + 1] == f"gateway-{k}"
        assert argv[argv.index("--queue") + 1] == str(tmp_path / f"gateway-{k}-queue.db")
        assert argv[argv.index("--http-port") + 1] == str(layout.ports.gateway_http + k - 1)
        assert argv[argv.index("--rd") + 1] == "off"
        assert "--no-southbound" in argv
        assert spec.env["TESTBED_GATEWAY__COAP_HOST"] == "off"
        assert [c.transport for c in spec.ports] == ["tcp"]  # no CoAP port


def test_gateways_out_of_range_are_refused() -> None:
    parser = build_parser()
    for bad in ("0", "17", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["up", "--gateways", bad])
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--platforms", "9"])


@pytest.mark.slow
def test_two_gateways_two_platforms_one_database(tmp_path: Path) -> None:
    scenario = tmp_path / "scale-out.toml"
    scenario.write_text(SCENARIO.format(coap=free_port("udp") - 20))
    platform, http = two_free(), two_free()
    cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(scenario)]
    cmd += ["--data-dir", str(tmp_path / "data"), "--gateways", "2", "--platforms", "2"]
    cmd += ["--platform-port", str(platform), "--gateway-http-port", str(http)]
    cmd += ["--broker-port", str(free_port()), "--rd-port", str(free_port("udp"))]
    cmd += ["--gateway-coap-port", str(free_port("udp")), "--dashboard-port", str(free_port())]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("Ctrl-C stops the city" in x for x in lines), lines, 120)
        text = "".join(lines)
        assert "platform-2 NGSI-LD at" in text, text
        assert "gateway-2 MQTT only" in text, text
        token = (tmp_path / "data" / "security" / "tokens" / "reader.jwt").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(timeout=5, headers=auth) as client:

            def forwarded(port: int) -> float:
                m = FORWARDED.search(client.get(f"http://[::1]:{port}/metrics").text)
                return float(m.group(1)) if m else 0.0

            def types_at(port: int) -> set[str]:
                r = client.get(f"http://[::1]:{port}/ngsi-ld/v1/types")
                return {t.rsplit("/", 1)[-1] for t in r.json().get("typeList", [])}

            # Both gateways take a share of the MQTT readings (one $share group) ...
            wait_until(lambda: forwarded(http) > 0 and forwarded(http + 1) > 0, lines, 60)

            def heard() -> set[str]:  # what the summary's "devices online" counts, once each
                ids: set[str] = set()
                for port in (http, http + 1):
                    r = client.get(f"http://[::1]:{port}/health", params={"ids": "1"})
                    ids |= set(r.json()["recentIds"])
                return ids

            wait_until(lambda: len(heard()) == 5, lines, 60)  # 4 MQTT, 1 CoAP push
            summary = Summary(
                gateway_health=f"http://[::1]:{http}/health",
                platform_url=f"http://[::1]:{platform}", devices=5, recent=60,
                more_gateways=(f"http://[::1]:{http + 1}/health",), platform_headers=auth,
            )  # fmt: skip
            assert "devices online 5/5" in asyncio.run(summary_line(summary))
            # ... gateway 1 still has the CoAP push device, and both platforms show it all
            # (one database behind them).
            want = {"NoiseLevelObserved", "WeatherObserved"}
            wait_until(lambda: want <= types_at(platform), lines, 60)
            assert want <= types_at(platform + 1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines)
    assert "city stopped" in "".join(lines)


async def summary_line(summary: Summary) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return await summary.line(client)


def wait_until(check: object, lines: list[str], within: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError("".join(lines)[-3000:])
