"""A VictoriaMetrics server on [::1] for the InfluxDB sink's tests and benchmark.

No InfluxDB 2 is packaged in Debian; ``victoria-metrics`` is, and it takes influxdb-client's v2
writes on /api/v2/write (line protocol; a point's series is ``<measurement>_<field>`` with the
tags as labels, the bucket is dropped), answered 204 as InfluxDB does.  Queried in PromQL
(/api/v1/query) or raw (/api/v1/export, one JSON line per series with every sample).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import orjson

from testbed.processes import HttpReady, ManagedProcess, PortClaim, ProcessSpec

BINARY = "victoria-metrics"


def victoria_spec(port: int, data_dir: Path, *, name: str = "victoria-metrics") -> ProcessSpec:
    """The server with its data in ``data_dir``; ready when /health answers."""
    binary = shutil.which(BINARY) or f"/usr/bin/{BINARY}"
    if not Path(binary).exists():
        raise RuntimeError(
            f"{BINARY} is not installed: apt-get install victoria-metrics (.ci/setup does)"
        )
    return ProcessSpec(
        name=name,
        argv=(
            binary,
            "-enableTCP6",
            "-httpListenAddr",
            f"[::1]:{port}",
            "-storageDataPath",
            str(data_dir),
            "-retentionPeriod",
            "100y",  # readings with any observedAt stay (the default is one month)
            "-loggerLevel",
            "WARN",
        ),
        ready=HttpReady(f"http://[::1]:{port}/health"),
        ports=(PortClaim(name, port, "tcp", "::1"),),
    )


class Victoria:
    """A running server's queries (the process is the caller's :class:`ManagedProcess`)."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.url = f"http://[::1]:{port}"
        self.process = ManagedProcess(victoria_spec(port, data_dir))

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, Any]]:
        """Every series matching ``match`` with all its samples (flushed first, so that what
        was acknowledged is seen)."""
        httpx.get(self.url + "/internal/force_flush", timeout=10).raise_for_status()
        answer = httpx.get(self.url + "/api/v1/export", params={"match[]": match}, timeout=30)
        answer.raise_for_status()
        return [orjson.loads(x) for x in answer.content.splitlines() if x.strip()]

    def samples(self, match: str = '{__name__=~".+"}') -> int:
        return sum(len(s["values"]) for s in self.export(match))

    def query(self, promql: str) -> list[dict[str, Any]]:
        httpx.get(self.url + "/internal/force_flush", timeout=10).raise_for_status()
        answer = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=30)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result
