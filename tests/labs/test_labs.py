"""Every command of every lab page (docs/labs/NN-*.md) runs against a real city, so labs cannot rot.

One secure city (``testbed up``) serves the whole session, plus the open one (``testbed up
--insecure``) for the pages that start it. The pages show the default ports; the test starts
each city on free ports and rewrites the defaults in commands and expected output (8883, 1883,
8000, 5783, 5684, 8081, 8090, 9000, the devices' 56830...), and runs everything with HOME set
to a temporary directory, so ``~/.local/share/r197-testbed/city`` is the test's city. The
lab's own ``testbed up`` command is the one the test starts (with the ports and a copy of the
workshop scenario whose CoAP devices listen on free ports added), and its printed lines are
checked like any other output. The convention is in tests/labs/labpages.py and
docs/labs/README.md.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.labs.labpages import Command, commands, pages, unmatched

LABS = ROOT / "docs" / "labs"
PAGES = pages(LABS)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CODE_FILE = re.compile(r"docs/labs/code/[\w./-]+\.yaml")  # IUT files: given with ports rewritten
OWN_SCENARIO = re.compile(r" --scenario (\S+)")  # `testbed up --scenario FILE` on a page
WAIT_FOR_CITY = 120.0  # seconds for a city's expected lines (20 devices online) to be printed


@dataclass
class City:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)

    def printed(self) -> str:
        return "".join(self.lines)


class Cities:
    """The session's cities, started when a lab page's ``testbed up`` asks for one."""

    def __init__(self, home: Path, work: Path) -> None:
        self.home = home
        self.work = work
        self.running: dict[bool, City] = {}  # insecure? -> city
        self.env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("XDG_DATA_HOME", None)
        self.env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + self.env["PATH"]

    def start(self, line: str, insecure: bool) -> City:
        own = OWN_SCENARIO.search(line)  # lab 09: a page's own scenario gets a city of its own
        if own is None and insecure in self.running:
            return self.running[insecure]
        source = ROOT / "devices" / "scenarios" / "workshop.toml"
        if own is not None:
            self.stop(insecure)  # as the student does: Ctrl-C the usual city (same ports)
            line = line.replace(own.group(0), "")
            source = ROOT / own.group(1).replace("~", str(self.home), 1)
        coap = free_port("udp") - 20
        scenario = self.work / f"workshop-{int(insecure)}.toml"
        text = source.read_text()
        ports_line = f"seed = 197\n[endpoints]\ncoap_base_port = {coap}"  # devices on free ports
        scenario.write_text(text.replace("seed = 197", ports_line, 1))
        ports = {"platform": free_port(), "broker": free_port(), "rd": free_port("udp")}
        ports |= {"gwcoap": free_port("udp"), "gwhttp": free_port(), "coap": coap}
        ports["dashboard"] = free_port()
        ports["receiver"] = free_port()  # lab 04's notification receiver (--allow-endpoint)
        ports["broken"], ports["fixed"] = free_port("udp"), free_port("udp")  # lab 06's devices
        extra = f" --scenario {scenario} --platform-port {ports['platform']}"
        extra += f" --broker-port {ports['broker']} --rd-port {ports['rd']}"
        extra += f" --gateway-coap-port {ports['gwcoap']} --gateway-http-port {ports['gwhttp']}"
        extra += f" --dashboard-port {ports['dashboard']}"
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + substitute(line, ports, insecure) + extra], cwd=ROOT,
            env=self.env, text=True, errors="replace", stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        city = City(proc, ports)
        threading.Thread(target=lambda: city.lines.extend(proc.stdout or ()), daemon=True).start()
        self.running[insecure] = city
        return city

    def stop(self, insecure: bool | None = None) -> None:
        """Stop the cities (only the secure or the open one when ``insecure`` is given)."""
        for mode in [m for m in self.running if insecure is None or m == insecure]:
            city = self.running.pop(mode)
            if city.proc.poll() is None:
                city.proc.send_signal(signal.SIGINT)  # Ctrl-C, as the labs say
                try:
                    city.proc.wait(30)
                except subprocess.TimeoutExpired:
                    city.proc.kill()


def substitute(text: str, city: City | dict[str, int] | None, insecure: bool) -> str:
    """The page's default ports replaced by the city's (none before the page's city starts)."""
    if city is None:
        return text
    ports = city if isinstance(city, dict) else city.ports
    mapping = {
        "1883" if insecure else "8883": ports["broker"],
        "8000": ports["platform"],
        "5783": ports["rd"],
        "5684": ports["gwcoap"],
        "8081": ports["gwhttp"],
        "8090": ports["dashboard"],
        "9000": ports["receiver"],
        "5699": ports["broken"],
        "5698": ports["fixed"],
    }

    def port(match: re.Match[str]) -> str:
        found = match.group(1)
        if found.startswith("5683"):
            return str(ports["coap"] + int(found[4]))
        return str(mapping[found])

    names = "|".join([*mapping, r"5683\d"])
    return re.sub(rf"(?<![\d.])({names})(?!\d)", port, text)


@pytest.fixture(scope="module")
def cities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cities]:
    home = tmp_path_factory.mktemp("home")
    held = Cities(home, tmp_path_factory.mktemp("work"))
    yield held
    held.stop()


def run_page(page: Path, cities: Cities) -> None:
    steps = commands(page.read_text())
    insecure = any(s.line.startswith("testbed up") and "--insecure" in s.line for s in steps)
    if not any(s.line.startswith("testbed up") for s in steps) and False not in cities.running:
        run_page(PAGES[0], cities)  # lab 01 starts the secure city the other labs use
    assignments: list[str] = []  # S=..., TOKEN=...: kept, as a shell keeps them
    background: list[tuple[Command, subprocess.Popen[str]]] = []
    city = cities.running.get(insecure)
    try:
        for step in steps:
            if step.line.startswith("testbed up"):
                city = cities.start(step.line, insecure)
                wait_for(step, city, insecure)
                continue
            # Before the page's city starts (secrets init) there is no port to rewrite.
            line = substitute(step.line, city, insecure)
            line = CODE_FILE.sub(
                partial(rewritten, cities=cities, city=city, insecure=insecure), line
            )
            script = "".join(a + "\n" for a in assignments) + line
            if ASSIGNMENT.match(step.line):
                assignments.append(line)
            if step.background:
                proc = subprocess.Popen(
                    ["bash", "-c", script], cwd=ROOT, env=cities.env, text=True, errors="replace",
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                background.append((step, proc))
                continue
            done = subprocess.run(
                ["bash", "-c", script], cwd=ROOT, env=cities.env, text=True,
                errors="replace", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=180, check=False,
            )  # fmt: skip
            check(page, step, done.stdout, done.returncode, city, insecure)
    finally:
        for step, proc in background:
            os.killpg(proc.pid, signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
            check(page, step, out, 0, city, insecure)
        if any(OWN_SCENARIO.search(s.line) for s in steps if s.line.startswith("testbed up")):
            cities.stop(insecure)  # the next page starts the usual city again


def rewritten(found: re.Match[str], *, cities: Cities, city: City | None, insecure: bool) -> str:
    """A copy of a lab's data file (an IUT YAML) with the city's ports in it."""
    name = found.group(0)
    copy = cities.work / f"{'open' if insecure else 'secure'}-{Path(name).name}"
    copy.write_text(substitute((ROOT / name).read_text(), city, insecure))
    return str(copy)


def wait_for(step: Command, city: City, insecure: bool) -> None:
    """Wait until the city printed what the lab shows (or died, or took too long)."""
    expected = [substitute(e, city, insecure) for e in step.expected]
    deadline = time.monotonic() + WAIT_FOR_CITY
    while unmatched(expected, city.printed()) is not None:
        if city.proc.poll() is not None or time.monotonic() > deadline:
            missing = unmatched(expected, city.printed())
            pytest.fail(f"`{step.line}` did not print {missing!r}; it printed:\n{city.printed()}")
        time.sleep(0.5)


def check(
    page: Path, step: Command, out: str, status: int, city: City | None, insecure: bool
) -> None:
    expected = [substitute(e, city, insecure) for e in step.expected]
    shown = f"{page.name}: `{step.line}` (exit {status}) printed:\n{out}"
    assert status == 0 or [e for e in expected if e.strip() != "..."], shown
    missing = unmatched(expected, out)
    assert missing is None, f"expected line {missing!r} missing\n{shown}"


def test_every_lab_page_has_commands() -> None:
    assert len(PAGES) >= 8, PAGES
    for page in PAGES:
        assert commands(page.read_text()), f"{page.name} has no console block"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.stem[:2] for p in PAGES])
def test_lab(page: Path, cities: Cities) -> None:
    run_page(page, cities)
