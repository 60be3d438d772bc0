"""The reference stack: our own parts, started on [::1] for every role the IUT does not fill."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conformance.iut import RoleConfig
from testbed.brokers import MosquittoBroker

ROOT = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET6, kind) as sock:
        sock.bind(("::1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reference part for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within} s")


def _wait_udp(port: int, proc: subprocess.Popen[bytes], within: float = 20) -> None:
    """Wait until a CoAP server answers a CoAP ping (empty CON) on [::1]:port."""
    deadline = time.monotonic() + within
    ping = bytes([0x40, 0x00, 0x12, 0x34])
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"reference CoAP device exited with {proc.returncode}")
            sock.sendto(ping, ("::1", port))
            try:
                sock.recv(64)
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"CoAP device on port {port} did not answer")


class ReferenceStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._broker: MosquittoBroker | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._roles: dict[str, RoleConfig] = {}

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._procs[name] = proc
        return proc

    def broker(self) -> RoleConfig:
        if "mqtt-broker" not in self._roles:
            self._broker = MosquittoBroker(port=free_port(), workdir=self.workdir / "mosquitto")
            self._broker.start()
            self._roles["mqtt-broker"] = RoleConfig(url=self._broker.url)
        return self._roles["mqtt-broker"]

    def restart_broker(self) -> None:
        """Stop and start the reference broker (persistence on), for resilience cases."""
        assert self._broker is not None
        self._broker.stop()
        self._broker.start()

    def platform(self) -> RoleConfig:
        if "ngsild-platform" not in self._roles:
            port = free_port()
            proc = self._spawn(
                "platform",
                [sys.executable, "-m", "testbed", "platform", "--host", "::1", "--port", str(port),
                 "--db", ":memory:", "--no-remote-contexts"],
            )  # fmt: skip
            _wait_http(f"http://[::1]:{port}/health", proc)
            self._roles["ngsild-platform"] = RoleConfig(url=f"http://[::1]:{port}")
        return self._roles["ngsild-platform"]

    def coap_device(self) -> RoleConfig:
        if "coap-device" not in self._roles:
            port = free_port(socket.SOCK_DGRAM)
            scenario = self.workdir / "coap-device.toml"
            scenario.write_text(
                f'[endpoints]\ncoap_base_port = {port}\n[[groups]]\nkind = "streetlight"\n'
                'count = 1\nprotocol = "coap"\nformat = "senml-json"\ninterval = 1\n'
            )
            proc = self._spawn(
                "coap-device",
                [
                    sys.executable,
                    "-m",
                    "testbed",
                    "devices",
                    "--scenario",
                    str(scenario),
                    "--rd",
                    "off",
                ],
            )
            _wait_udp(port, proc)
            self._roles["coap-device"] = RoleConfig(
                url=f"coap://[::1]:{port}",
                device_id="streetlight-0001",
                resources={
                    "observable": "/sensors",
                    "large": "/log",
                    "actuator": "/actuators/powerState",
                },
            )
        return self._roles["coap-device"]

    def gateway(self, broker: RoleConfig, platform: RoleConfig) -> RoleConfig:
        if "gateway" not in self._roles:
            http_port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
            cmd = [sys.executable, "-m", "testbed", "gateway", "--platform", platform.url]
            cmd += ["--broker", broker.url, "--rd", "off", "--coap-port", str(coap_port)]
            cmd += ["--http-port", str(http_port), "--queue", str(self.workdir / "queue.db")]
            if broker.password:
                cmd += ["--broker-password", broker.password]
            if broker.username:
                cmd += ["--broker-user", broker.username]
            proc = self._spawn("gateway", cmd)
            _wait_http(f"http://[::1]:{http_port}/health", proc)
            deadline = time.monotonic() + 30  # until its MQTT subscription is in place
            while time.monotonic() < deadline:
                if httpx.get(f"http://[::1]:{http_port}/health", timeout=2).json().get("mqtt"):
                    break
                time.sleep(0.2)
            self._roles["gateway"] = RoleConfig(
                url=f"coap://[::1]:{coap_port}",
                resources={"metrics": f"http://[::1]:{http_port}/metrics", "push": "/up"},
            )
        return self._roles["gateway"]

    def close(self) -> None:
        for proc in reversed(list(self._procs.values())):
            proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._broker is not None:
            self._broker.close()
