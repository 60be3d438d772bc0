"""docker-compose.yml runs the same stack: one image from this repository plus Mosquitto."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_describes_the_whole_city_on_ipv6() -> None:
    """Broker, platform, RD, gateway and devices; one built image; an IPv6 network."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"mosquitto", "platform", "rd", "gateway", "devices"}
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    built = {name for name, s in services.items() if s.get("build") == "."}
    assert built == {"platform", "rd", "gateway", "devices"}
    assert {s["image"] for name, s in services.items() if name in built} == {"r197-testbed:latest"}
    assert doc["networks"]["city"]["enable_ipv6"] is True
    for name in built:
        assert services[name]["command"][0] in ("testbed", "aiocoap-rd")
    if shutil.which(
        "docker-compose"
    ):  # the real parser, where Debian's docker-compose is installed
        done = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_dockerfile_installs_the_project_with_every_extra() -> None:
    """The image is built from the repository with all extras and the testbed command."""
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir '.[all]'" in text
    for package in ("city_platform", "gateway", "devices", "conformance", "testbed"):
        assert f"COPY {package} {package}" in text
