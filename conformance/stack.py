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
        self._platform_port = 0
        self._rd_url = ""
        self._rd_device_port = 0
        self._rd_device_rd = ""

    def _spawn(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
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
            self._platform_port = free_port()
            self._start_platform()
            self._roles["ngsild-platform"] = RoleConfig(url=f"http://[::1]:{self._platform_port}")
        return self._roles["ngsild-platform"]

    def _start_platform(self) -> None:
        # A file database, so that a platform outage (R197-RES-02) keeps what was stored.
        port = self._platform_port
        proc = self._spawn(
            "platform",
            [sys.executable, "-m", "testbed", "platform", "--host", "::1", "--port", str(port),
             "--db", str(self.workdir / "platform.db"), "--no-remote-contexts"],
        )  # fmt: skip
        _wait_http(f"http://[::1]:{port}/health", proc)

    def stop_platform(self) -> None:
        self._stop("platform")

    def start_platform(self) -> None:
        self._start_platform()

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def rd(self) -> str:
        """A CoRE resource directory (aiocoap-rd, RFC 9176) that the reference gateway reads."""
        if "rd" not in self._procs:
            port = free_port(socket.SOCK_DGRAM)
            rd = str(Path(sys.executable).with_name("aiocoap-rd"))
            # UDP only: by default aiocoap-rd also binds TCP and WebSocket on the same port.
            proc = self._spawn(
                "rd", [rd, "--bind", f"[::1]:{port}"], env={"AIOCOAP_SERVER_TRANSPORT": "udp6"}
            )
            _wait_udp(port, proc)
            self._rd_url = f"coap://[::1]:{port}"
        return self._rd_url

    def directory_device(self, rd_url: str) -> str:
        """A reference CoAP device registered in ``rd_url``; returns its device id."""
        if "rd-device" not in self._procs:
            self._rd_device_port = free_port(socket.SOCK_DGRAM)
            self._rd_device_rd = rd_url
            self._start_directory_device()
        return "streetlight-rd0001"

    def _start_directory_device(self) -> None:
        scenario = self.workdir / "rd-device.toml"
        scenario.write_text(
            f"[endpoints]\ncoap_base_port = {self._rd_device_port}\n[[groups]]\n"
            'kind = "streetlight"\ncount = 1\nprotocol = "coap"\nformat = "senml-json"\n'
            'interval = 1\nprefix = "rd"\n'
        )
        cmd = [sys.executable, "-m", "testbed", "devices", "--scenario", str(scenario)]
        proc = self._spawn("rd-device", [*cmd, "--rd", self._rd_device_rd])
        _wait_udp(self._rd_device_port, proc)

    def restart_directory_device(self) -> None:
        """Stop the directory device and start it again on the same port: it forgets observers."""
        self._stop("rd-device")
        self._start_directory_device()

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
            cmd = [sys.executable, "-m", "testbed", "-v", "gateway", "--platform", platform.url]
            cmd += ["--broker", broker.url, "--rd", self.rd(), "--coap-port", str(coap_port)]
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
                resources={
                    "metrics": f"http://[::1]:{http_port}/metrics",
                    "push": "/up",
                    "rd": self.rd(),
                },
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
