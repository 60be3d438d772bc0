"""`testbed up --insecure`: the open lab city of a first lesson, as before issue 17."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

SCENARIO = """
seed = 11
[endpoints]
coap_base_port = {coap}
[[groups]]
kind = "weather"
count = 1
protocol = "mqtt"
format = "senml-json"
interval = 1
[[groups]]
kind = "parking"
count = 1
protocol = "coap-push"
format = "senml-cbor"
interval = 1
"""


@pytest.mark.slow
def test_the_insecure_city_is_open_and_says_so(tmp_path: Path) -> None:
    """Plain MQTT with the lab accounts (observer/observer), an API without tokens, no
    credentials made; the start-up output says INSECURE loudly; readings still flow."""
    data = tmp_path / "data"
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO.format(coap=free_port("udp") - 20))
    platform, broker = free_port(), free_port()
    cmd = [sys.executable, "-m", "testbed", "up", "--insecure", "--scenario", str(scenario)]
    cmd += ["--data-dir", str(data), "--platform-port", str(platform)]
    cmd += ["--broker-port", str(broker), "--rd-port", str(free_port("udp"))]
    cmd += ["--gateway-coap-port", str(free_port("udp")), "--gateway-http-port", str(free_port())]
    dashboard = free_port()
    cmd += ["--dashboard-port", str(dashboard)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    api = f"http://[::1]:{platform}/ngsi-ld/v1"
    try:
        entity, last = "urn:ngsi-ld:WeatherObserved:weather-0001", None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                last = httpx.get(f"{api}/entities/{entity}")  # no token needed
                if last.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert last is not None
        assert last.status_code == 200, last.text
        sub = subprocess.run(
            ["mosquitto_sub", "-h", "::1", "-p", str(broker), "-u", "observer", "-P", "observer",
             "-t", "city/+/+/up/#", "-F", "%t", "-C", "1", "-W", "20"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith("city/weather/weather-0001/up/")
        # The dashboard: no login, live values pushed from its subscription (docs/dashboard.md)
        board = f"http://[::1]:{dashboard}"
        assert httpx.get(f"{board}/api/session").json() == {"secure": False, "loggedIn": True}
        with httpx.stream("GET", f"{board}/events", timeout=20) as events:  # a read times out
            assert "event: entities" in events.iter_lines()  # stops at the first notification
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "!!! INSECURE CITY (--insecure)" in out
    assert f"broker    mosquitto at mqtt://[::1]:{broker}" in out
    assert "tokens " not in out
    assert not (data / "security").exists()


def test_a_secure_city_without_mosquitto_says_what_to_do(tmp_path: Path) -> None:
    """The embedded amqtt broker has no TLS and no ACL: secure mode refuses it, in words, before
    anything starts or any credential is made; --insecure may use it."""
    cmd = [sys.executable, "-m", "testbed", "up", "--broker", "amqtt", "--duration", "1"]
    cmd += ["--data-dir", str(tmp_path / "data")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "install mosquitto (apt-get install mosquitto) or use --insecure" in done.stderr
    assert not (tmp_path / "data").exists()
