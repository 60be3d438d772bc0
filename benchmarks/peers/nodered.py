"""The Node-RED peer: installed from the npm registry under ``benchmarks/peers/node-red/``.

The flow (``nodered_flow.json``) is what a Node-RED user would build for the job: an ``mqtt in``
node on the same topics (QoS 1, parsed JSON), a function resolving SenML records into the NGSI-LD
entities our gateway writes (the reading's entity; with a device's first reading and then once a
minute also its ``refDevice`` and its ``Device`` entity), a ``join`` node batching 100 readings or
50 ms, and an ``http request`` node POSTing the batch to ``/entityOperations/upsert?options=update``
(merge, as the gateway does) with a kept-alive connection. A last function counts confirmed
readings, the time of the last confirmation and each reading's latency from the device timestamp,
served at ``/r197/stats``. ``tests/benchmarks/test_peer_same_job.py`` checks that the flow and
the gateway leave the same entities.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from testbed.processes import HttpReady, ManagedProcess, ProcessFailed, ProcessSpec

HERE = Path(__file__).resolve().parent
PREFIX = HERE / "node-red"
VERSION = "4.1"  # the release line installed (npm semver range ~4.1)
RED_JS = PREFIX / "node_modules" / "node-red" / "red.js"


class PeerUnavailable(RuntimeError):
    pass


def install() -> str:
    """Install node-red under benchmarks/peers/node-red/ once; returns its version."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerUnavailable(
            "Node.js and npm are needed for the Node-RED peer (apt install nodejs npm)"
        )
    if not RED_JS.exists():
        PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund",
             "--loglevel=error", f"node-red@~{VERSION}"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not RED_JS.exists():
            raise PeerUnavailable(f"npm install node-red failed: {done.stderr.strip()[-400:]}")
    package = json.loads((RED_JS.parent / "package.json").read_text())
    return str(package["version"])


class NodeRed:
    """Node-RED with the peer flow, listening on [::1]:``port``."""

    def __init__(self, workdir: Path, port: int, mqtt_port: int, platform_port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.flow = (HERE / "nodered_flow.json").read_text()
        self.flow = self.flow.replace("@MQTT_PORT@", str(mqtt_port))
        self.flow = self.flow.replace("@PLATFORM_PORT@", str(platform_port))
        self.process: ManagedProcess | None = None
        self._client = httpx.Client(timeout=30)  # kept alive: see gateway.Stack

    def __enter__(self) -> NodeRed:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "flows.json").write_text(self.flow)
        (self.workdir / "settings.js").write_text(
            f"module.exports = {{uiHost: '::1', uiPort: {self.port}, flowFile: 'flows.json',\n"
            "  httpAdminRoot: false, credentialSecret: false,\n"
            "  logging: {console: {level: 'warn', metrics: false, audit: false}}};\n"
        )
        spec = ProcessSpec(
            name="node-red",
            argv=("node", str(RED_JS), "--userDir", str(self.workdir),
                  "--settings", str(self.workdir / "settings.js")),
            ready=HttpReady(self.url),
            start_timeout=60,
            stop_timeout=20,
        )  # fmt: skip
        self.process = ManagedProcess(spec, log_path=self.workdir / "node-red.log")
        try:
            self.process.start()
        except ProcessFailed as exc:
            self._client.close()
            raise PeerUnavailable(f"Node-RED did not start: {exc}") from None
        time.sleep(1.0)  # the MQTT subscription follows the HTTP listener
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        self._client.close()

    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}/r197/stats"

    def stats(self, since: int | None = None) -> dict[str, Any]:
        """``confirmed`` readings, ``last_ms`` (Unix time in ms of the last confirmation),
        ``samples`` taken, and the latencies (ms) from ``since`` on."""
        params = {} if since is None else {"since": str(since)}
        data: dict[str, Any] = self._client.get(self.url, params=params).json()
        return data

    @property
    def pid(self) -> int:
        assert self.process is not None
        assert self.process.pid is not None
        return self.process.pid
