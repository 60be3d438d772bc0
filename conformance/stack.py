"""The reference stack: our own parts, started on [::1] for every role the IUT does not fill.

Each part is a :class:`testbed.processes.ManagedProcess` built from the same command lines as
``testbed up`` (testbed.parts), started when a case first needs its role.
"""

from __future__ import annotations

import time
from pathlib import Path

from conformance.iut import RoleConfig
from conformance.stack_secure import SecureParts
from testbed.brokers import MosquittoBroker
from testbed.parts import GatewayOptions, devices_spec, gateway_spec, platform_spec, rd_spec
from testbed.processes import HttpReady, ManagedProcess, ProcessSpec, free_port

_ONE_STREETLIGHT = """\
[endpoints]
coap_base_port = {port}
[[groups]]
kind = "streetlight"
count = 1
protocol = "coap"
format = "senml-json"
interval = 1
"""


class ReferenceStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._broker: MosquittoBroker | None = None
        self._procs: dict[str, ManagedProcess] = {}
        self._roles: dict[str, RoleConfig] = {}
        self._rd_url = ""
        # TLS broker, token platform and gateway: started by the first R197-SEC case needing one.
        self.secure = SecureParts(workdir, self._start)

    def _start(self, spec: ProcessSpec) -> ManagedProcess:
        """Start (or start again) the part ``spec`` names; its log is ``<name>.log``."""
        proc = self._procs.get(spec.name)
        if proc is None:
            proc = ManagedProcess(spec, log_path=self.workdir / f"{spec.name}.log")
            self._procs[spec.name] = proc
        proc.start()
        return proc

    def pids(self) -> set[int]:
        """The process ids of every running reference part (the broker's included)."""
        procs = [*self._procs.values(), *([self._broker.process] if self._broker else [])]
        return {p.pid for p in procs if p.pid is not None and p.alive}

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
            # A file database, so that a platform outage (R197-RES-02) keeps what was stored.
            port = free_port()
            self._start(platform_spec(port=port, db=self.workdir / "platform.db", verbose=0))
            self._roles["ngsild-platform"] = RoleConfig(url=f"http://[::1]:{port}")
        return self._roles["ngsild-platform"]

    def stop_platform(self) -> None:
        self._procs["platform"].stop()

    def start_platform(self) -> None:
        self._procs["platform"].start()

    def rd(self) -> str:
        """A CoRE resource directory (aiocoap-rd, RFC 9176) that the reference gateway reads."""
        if "rd" not in self._procs:
            port = free_port("udp")
            self._start(rd_spec(port=port))
            self._rd_url = f"coap://[::1]:{port}"
        return self._rd_url

    def directory_device(self, rd_url: str) -> str:
        """A reference CoAP device registered in ``rd_url``; returns its device id."""
        if "rd-device" not in self._procs:
            port = free_port("udp")
            scenario = self.workdir / "rd-device.toml"
            scenario.write_text(_ONE_STREETLIGHT.format(port=port) + 'prefix = "rd"\n')
            spec = devices_spec(scenario=scenario, name="rd-device", rd=rd_url, ready_port=port)
            self._start(spec)
        return "streetlight-rd0001"

    def restart_directory_device(self) -> None:
        """Stop the directory device and start it again on the same port: it forgets observers."""
        proc = self._procs["rd-device"]
        proc.stop()
        proc.start()

    def coap_device(self) -> RoleConfig:
        if "coap-device" not in self._roles:
            port = free_port("udp")
            scenario = self.workdir / "coap-device.toml"
            scenario.write_text(_ONE_STREETLIGHT.format(port=port))
            self._start(devices_spec(scenario=scenario, name="coap-device", ready_port=port))
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
            http_port, coap_port = free_port(), free_port("udp")
            options = GatewayOptions(
                platform_url=platform.url,
                broker_url=broker.url,
                http_port=http_port,
                coap_port=coap_port,
                queue=self.workdir / "queue.db",
                rd=self.rd(),
                broker_user=broker.username or None,
                broker_password=broker.password or None,
            )
            self._start(gateway_spec(options, verbose=1, wait_for_mqtt=False))
            # Until its MQTT subscription is in place; an IUT broker that refuses it makes the
            # gateway cases fail with their own reasons, not the session.
            subscribed = HttpReady(f"http://[::1]:{http_port}/health", require="mqtt")
            deadline = time.monotonic() + 30
            while not subscribed() and time.monotonic() < deadline:
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
            proc.stop()
        if self._broker is not None:
            self._broker.close()
        self.secure.close()
