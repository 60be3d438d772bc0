"""The dashboard in a real browser (Playwright driving Debian's Chromium) against a real secure
city started by `testbed up` (Mosquitto over TLS, platform with tokens, gateway, devices):
markers appear, a live value changes, a chart draws, a streetlight switches through the
platform and the device reports it, a read token's switch shows the platform's 403, the
conformance reports are listed.  Without Playwright or Chromium this FAILS (never skips):
.ci/setup installs both."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from testbed.browser import BrowserMissing, launch, sync_playwright
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

SCENARIO = """
seed = 11
[[groups]]
kind = "noise"
count = 2
protocol = "mqtt"
mqtt_version = "3.1.1"
format = "senml-json"
interval = 1

[[groups]]
kind = "weather"
count = 1
protocol = "mqtt"
format = "senml-cbor"
interval = 1

[[groups]]
kind = "streetlight"
count = 1
protocol = "mqtt"
format = "senml-json"
interval = 1
"""
STARTED = "Ctrl-C stops the city"
LIGHT = "urn:ngsi-ld:Streetlight:streetlight-0001"


@dataclass
class City:
    dashboard: str
    platform: str
    tokens: Path
    log: Path

    def token(self, name: str) -> str:
        return (self.tokens / f"{name}.jwt").read_text().strip()

    def entity(self, eid: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token('reader')}"}
        answer = httpx.get(f"{self.platform}/ngsi-ld/v1/entities/{eid}", headers=headers)
        answer.raise_for_status()
        doc: dict[str, Any] = answer.json()
        return doc


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    tmp = tmp_path_factory.mktemp("dashcity")
    (tmp / "city.toml").write_text(SCENARIO)
    reports = tmp / "reports" / "reference"
    reports.mkdir(parents=True)
    case = {"id": "R197-NGSI-01", "objective": "create an entity", "theme": "interoperability",
            "verdict": "pass", "detail": ""}  # fmt: skip
    report = {"implementation": "r197 reference stack", "date": "2026-12-03T10:00:00+00:00",
              "summary": {"pass": 1}, "roles": {}, "results": [case]}  # fmt: skip
    (reports / "report.json").write_text(json.dumps(report))
    ports = {
        "--platform-port": free_port(), "--broker-port": free_port(),
        "--rd-port": free_port("udp"), "--gateway-coap-port": free_port("udp"),
        "--gateway-http-port": free_port(), "--dashboard-port": free_port(),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "testbed", "up", "--scenario", str(tmp / "city.toml")]
    cmd += ["--data-dir", str(tmp / "data"), "--reports", str(tmp / "reports")]
    cmd += ["--duration", "300"]
    for option, port in ports.items():
        cmd += [option, str(port)]
    log = tmp / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while STARTED not in log.read_text():
            assert proc.poll() is None, f"testbed up exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"testbed up did not start:\n{log.read_text()}"
            time.sleep(0.2)
        dashboard = f"http://[::1]:{ports['--dashboard-port']}"
        assert f"dashboard {dashboard}/" in log.read_text()
        yield City(
            dashboard=dashboard,
            platform=f"http://[::1]:{ports['--platform-port']}",
            tokens=tmp / "data" / "security" / "tokens",
            log=log,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with sync_playwright() as pw:
            chromium = launch(pw)
            yield chromium
            chromium.close()
    except BrowserMissing as exc:
        pytest.fail(f"the dashboard's browser test needs Playwright and Chromium: {exc}")


def _logged_in(browser: Any, city: City, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    page.goto(city.dashboard + "/")
    page.wait_for_selector("#login-form")
    page.fill("#token", city.token(token))
    page.click("#login-button")
    page.wait_for_selector("#live.on")  # the SSE stream is open
    return page


@pytest.fixture(scope="module")
def page(browser: Any, city: City) -> Iterator[Any]:
    page = _logged_in(browser, city, "admin")
    yield page
    page.close()


def _select(page: Any, entity_type: str, index: int = 0) -> None:
    # dispatch_event: another marker's open popup may cover this one; Leaflet gets the click.
    # Clicked again if the detail does not show: on a loaded CI machine a click dispatched
    # while the map was still fitting itself to the first markers was lost (4 tests timed
    # out waiting for the detail, once, in a clean-clone run).
    marker = page.locator(f"path.type-{entity_type}").nth(index)
    for _ in range(5):
        marker.dispatch_event("click")
        try:
            page.wait_for_selector(f"#detail h2:has-text('{entity_type}')", timeout=6_000)
        except PlaywrightTimeout:
            continue
        return
    pytest.fail(f"clicking a {entity_type} marker five times showed no detail")


def test_markers_appear_for_the_citys_devices(page: Any) -> None:
    """One marker per observed entity (2 noise, 1 weather, 1 streetlight), coloured by type."""
    page.wait_for_function("document.querySelectorAll('path.device-marker').length >= 4")
    assert page.locator("path.type-NoiseLevelObserved").count() == 2
    assert page.locator("path.type-Streetlight").count() == 1
    fills = {page.locator(f"path.type-{t}").first.get_attribute("fill") for t in
             ("NoiseLevelObserved", "WeatherObserved", "Streetlight")}  # fmt: skip
    assert len(fills) == 3


def test_a_live_value_changes_on_the_page(page: Any) -> None:
    """The selected noise sensor's LAeq is replaced by pushed notifications (SSE), no reload."""
    _select(page, "NoiseLevelObserved")
    cell = "#detail tr[data-attr=LAeq] td.value"
    first = page.inner_text(cell)
    page.wait_for_function(
        f"document.querySelector({cell!r}).innerText !== {first!r}", timeout=20_000
    )
    assert int(page.get_attribute("#live", "data-updates")) > 0


def test_a_chart_of_the_history_draws(page: Any) -> None:
    """uPlot draws the temporal API's values of the selected measurement in a canvas."""
    _select(page, "WeatherObserved")
    page.wait_for_function(
        "Number(document.querySelector('#chart')?.dataset.points ?? 0) >= 2", timeout=20_000
    )
    assert page.locator("#chart canvas").count() >= 1


def test_switching_the_streetlight_changes_the_devices_state(page: Any, city: City) -> None:
    """The switch PATCHes the entity through the platform; the gateway relays it to the
    device, which reports the new powerState (a newer observedAt) and the page shows it."""
    before = city.entity(LIGHT)["powerState"]["value"]
    target = "off" if before == "on" else "on"
    _select(page, "Streetlight")
    clicked = datetime.now(UTC)
    page.click(f"#switch-{target}")
    deadline = time.monotonic() + 20
    while True:
        state = city.entity(LIGHT)["powerState"]
        reported = state.get("observedAt")
        if state["value"] == target and reported and datetime.fromisoformat(reported) > clicked:
            break
        assert time.monotonic() < deadline, f"the device did not report {target}: {state}"
        time.sleep(0.2)
    page.wait_for_selector(f"#actuation-status:has-text('device reports powerState {target}')")


def test_dimming_the_streetlight_is_reported_by_the_device(page: Any, city: City) -> None:
    """The slider PATCHes illuminanceLevel (0..1, unitCode C62); the device, told its
    dimmingLevel in percent by the gateway, reports the new level back."""
    before = city.entity(LIGHT)["illuminanceLevel"]["value"]
    target = 30 if round(before * 100) != 30 else 70
    _select(page, "Streetlight")
    changed = datetime.now(UTC)
    page.fill("#dim", str(target))  # a range input: sets the value, fires input and change
    deadline = time.monotonic() + 20
    while True:
        level = city.entity(LIGHT)["illuminanceLevel"]
        reported = level.get("observedAt")
        fresh = reported is not None and datetime.fromisoformat(reported) > changed
        if fresh and round(level["value"] * 100) == target:
            break
        assert time.monotonic() < deadline, f"the device did not report {target} %: {level}"
        time.sleep(0.2)


def test_a_read_token_switch_shows_the_platforms_403(browser: Any, city: City) -> None:
    """A read-only user sees everything but the switch answers the platform's 403 clearly."""
    reader = _logged_in(browser, city, "reader")
    try:
        reader.wait_for_selector("path.type-Streetlight")
        _select(reader, "Streetlight")
        reader.click("#switch-on")
        reader.wait_for_selector("#actuation-status.error:has-text('403')")
        assert "write" in reader.inner_text("#actuation-status")
    finally:
        reader.close()


def test_the_device_table_and_reports_are_browsable(page: Any) -> None:
    """Devices tab: every device with protocol, format, online; reports tab: the report and
    its rendered cases."""
    page.click("nav button[data-tab=devices]")
    row = "#devices-table tr[data-device=streetlight-0001]"
    page.wait_for_selector(row)
    assert "mqtt" in page.inner_text(row)
    assert "senml-json" in page.inner_text(row)
    page.wait_for_selector("#health .box:has-text('Gateway') .online")
    page.click("nav button[data-tab=reports]")
    page.wait_for_selector("#reports-list tr[data-report='reports/reference']")
    page.wait_for_selector("#report-view td:has-text('R197-NGSI-01')")
    page.click("nav button[data-tab=map]")
