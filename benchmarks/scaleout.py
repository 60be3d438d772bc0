"""Scale-out: readings/s through 1, 2 and 4 gateways of one MQTT 5 shared subscription.

``python -m benchmarks.scaleout [--quick]``.  One Mosquitto, one platform (SQLite, or with
``--postgres`` two platforms on one throw-away PostgreSQL database, the gateways round-robin
over them as ``testbed up --gateways N --platforms 2`` spreads them), and N gateway processes,
each with its own client id, queue file and HTTP port, all in ``$share/r197-gateways``.  The
load generator (benchmarks/gateway.py's, in its own process) publishes the same MQTT SenML CBOR
workload as the single-gateway figure; a run ends when the gateways together have had the
platform confirm every reading (their forwarded counters; the time of the last forward).  Each
run then counts the platform's stored LAeq instances: exactly the readings sent (no loss, no
repeat: city_platform/storage/repeats.py), or the figure is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform as host
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import gateway as gw
from benchmarks import loadgen
from testbed.brokers import MosquittoBroker
from testbed.parts import GatewayOptions, gateway_spec, platform_spec
from testbed.processes import ManagedProcess, free_port

FORMAT = "senml-cbor"


class ScaleStack:
    """Mosquitto (anonymous, no persistence), the platform(s) and ``gateways`` gateways."""

    def __init__(self, tmp: Path, gateways: int, db_url: str | None = None) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.broker = MosquittoBroker(port=free_port(), persistence=False, workdir=tmp / "mq")
        logs = tmp / "logs"
        platforms = 1 if db_url is None else 2
        self.platform_ports = [free_port() for _ in range(platforms)]
        self.platforms = [
            ManagedProcess(
                platform_spec(
                    port=port, db=db_url or tmp / "platform.db", verbose=0, name=f"platform-{k}"
                ),
                log_path=logs / f"platform-{k}.log",
            )
            for k, port in enumerate(self.platform_ports, 1)
        ]
        self.http_ports = [free_port() for _ in range(gateways)]
        self.gateways = []
        for k, port in enumerate(self.http_ports, 1):
            target = self.platform_ports[(k - 1) % platforms]
            options = GatewayOptions(
                platform_url=f"http://[::1]:{target}", broker_url=self.broker.url,
                http_port=port, coap_port=free_port("udp"), queue=tmp / f"queue-{k}.db",
                southbound=False, extra=("--client-id", f"r197-gateway-{k}"),
            )  # fmt: skip
            self.gateways.append(
                ManagedProcess(
                    gateway_spec(options, verbose=0, name=f"gateway-{k}"),
                    log_path=logs / f"gateway-{k}.log",
                )
            )
        self._client = httpx.Client(timeout=5)
        self.sent = 0  # readings published so far: the next run's go on from there

    def __enter__(self) -> ScaleStack:
        with contextlib.ExitStack() as started:
            self.broker.start()
            started.callback(self.broker.close)
            for proc in (*self.platforms, *self.gateways):
                started.enter_context(proc)
            started.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in (*self.gateways, *self.platforms):
            proc.stop()
        self.broker.close()
        self._client.close()

    def forwarded(self) -> tuple[float, float | None]:
        """(readings the platform confirmed, over all gateways; the latest forward's time)."""
        total, last = 0.0, None
        for port in self.http_ports:
            text = self._client.get(f"http://[::1]:{port}/metrics").text
            if m := gw.FORWARDED.search(text):
                total += float(m.group(1))
            if m := gw.LAST_FORWARD.search(text):
                last = max(last or 0.0, float(m.group(1)))
        return total, last

    def wait_forwarded(self, target: float, within: float = 300) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            total, last = self.forwarded()
            if total >= target:
                return time.monotonic() if last is None else gw.monotonic_of(last)
            time.sleep(0.05)
        raise RuntimeError(f"the gateways forwarded {self.forwarded()[0]} of {target}")

    def stored(self, devices: int) -> int:
        """LAeq instances in the platform's history, by its temporal API (CIM 009 5.7.3): what
        a user would count.  (Reading the SQLite file beside the running platform was refused
        as "malformed" while it wrote.)"""
        api = f"http://[::1]:{self.platform_ports[0]}/ngsi-ld/v1/temporal/entities"
        total = 0
        for d in range(devices):
            r = self._client.get(
                f"{api}/urn:ngsi-ld:NoiseLevelObserved:noise-b{d}",
                params={"attrs": "LAeq", "lastN": "100000"},
            )
            if r.status_code == 200:
                total += len(r.json().get("LAeq", []))
        return total


def publisher(port: int, count: int, devices: int, first: int, started: Any) -> None:
    """In its own process: ``count`` readings, reading n of device n % devices observed at
    T0 + n // devices ms.  Distinct observedAt per device (the gateway keeps milliseconds):
    benchmarks/gateway.py's stamps one clock reading per 50 messages, and two of a device's
    readings within one millisecond with the same value are one reading to the platform."""
    t0 = 1_700_000_000.0

    def message(n: int, _now: float) -> tuple[str, bytes]:
        n += first
        device = f"noise-b{n % devices}"
        t = t0 + (n // devices) / 1000
        return f"city/noise/{device}/up/{FORMAT}", gw.payload(FORMAT, device, t, 40 + n % 50)

    started.value = asyncio.run(loadgen.publish(port, count, message))


def run_publisher(port: int, count: int, devices: int, first: int) -> float:
    started = multiprocessing.Value("d", 0.0)
    proc = multiprocessing.Process(target=publisher, args=(port, count, devices, first, started))
    proc.start()
    proc.join()
    return float(started.value)


def cpu_seconds(procs: list[ManagedProcess]) -> float:
    """User + system CPU time of the processes, from /proc (Linux)."""
    total = 0.0
    for proc in procs:
        assert proc.pid is not None
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def one_run(stack: ScaleStack, readings: int, devices: int) -> dict[str, float]:
    before = stack.forwarded()[0]
    cpu_gw, cpu_pf = cpu_seconds(stack.gateways), cpu_seconds(stack.platforms)
    stored_before = stack.stored(devices)
    began = run_publisher(stack.broker.port, readings, devices, stack.sent)
    stack.sent += readings
    done = stack.wait_forwarded(before + readings)
    seconds = done - began
    # CPU per 1,000 readings, taken before the counting below (the temporal reads cost too).
    gw_ms = (cpu_seconds(stack.gateways) - cpu_gw) / readings * 1e6
    pf_ms = (cpu_seconds(stack.platforms) - cpu_pf) / readings * 1e6
    # What the gateways forwarded is in the platform; the count must be exact.  Polled: another
    # connection saw the last rows up to ~0.3 s after the gateways' counters had them.
    deadline = time.monotonic() + 30
    stored = stack.stored(devices) - stored_before
    while stored < readings and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = stack.stored(devices) - stored_before
    time.sleep(0.5)  # and no repeat arriving late
    stored = stack.stored(devices) - stored_before
    if stored != readings:
        raise RuntimeError(f"{stored} LAeq instances stored for {readings} readings")
    return {
        "readings": readings, "seconds": seconds, "readings_per_s": readings / seconds,
        "gateway_cpu_ms_per_1000": gw_ms, "platform_cpu_ms_per_1000": pf_ms,
    }  # fmt: skip


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield None
        return
    from testbed.pgcluster import PgCluster  # noqa: PLC0415

    with PgCluster() as cluster:
        yield cluster.create_database("r197_bench")


def measure(
    counts: list[int], readings: int, devices: int, runs: int, postgres: bool
) -> list[dict[str, Any]]:
    """readings/s per gateway count: the median of ``runs`` runs with min and max."""
    out = []
    for n in counts:
        with (
            tempfile.TemporaryDirectory(prefix=f"r197-scale-{n}-") as tmp,
            database(postgres) as url,
            ScaleStack(Path(tmp), n, url) as stack,
        ):
            one_run(stack, min(readings, 2000), devices)  # warm-up: sessions, series, caches
            rates, gw_cpu, pf_cpu = [], [], []
            for i in range(runs):
                gw.log(f"scale-out: {n} gateway(s), run {i + 1}/{runs}, {readings:,} readings")
                run = one_run(stack, readings, devices)
                rates.append(run["readings_per_s"])
                gw_cpu.append(run["gateway_cpu_ms_per_1000"])
                pf_cpu.append(run["platform_cpu_ms_per_1000"])
            out.append(
                {
                    "gateways": n,
                    "platforms": len(stack.platforms),
                    "readings": readings,
                    "median": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                    "gateway_cpu_ms_per_1000": statistics.median(gw_cpu),
                    "platform_cpu_ms_per_1000": statistics.median(pf_cpu),
                }
            )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = [
        "| gateways | platforms | readings/run | readings/s median | min | max "
        "| gateways' CPU ms / 1,000 | platforms' CPU ms / 1,000 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(
        head
        + [
            f"| {r['gateways']} | {r['platforms']} | {r['readings']:,} | {r['median']:,.0f} | "
            f"{r['min']:,.0f} | {r['max']:,.0f} | {r['gateway_cpu_ms_per_1000']:.0f} | "
            f"{r['platform_cpu_ms_per_1000']:.0f} |"
            for r in rows
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaleout",
        description="readings/s through 1, 2 and 4 gateways of one shared subscription",
    )
    parser.add_argument("--quick", action="store_true", help="small runs (about a minute)")
    parser.add_argument("--gateways", default="1,2,4", help="gateway counts (1,2,4)")
    parser.add_argument("--readings", type=int, help="readings per run (20,000; quick 4,000)")
    parser.add_argument("--devices", type=int, default=100, help="device identities (100)")
    parser.add_argument("--runs", type=int, help="runs per count (3; quick 1)")
    parser.add_argument(
        "--postgres", action="store_true", help="two platforms on one PostgreSQL database"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.gateways.split(",")]
    readings = args.readings or (4000 if args.quick else 20000)
    runs = args.runs or (1 if args.quick else 3)
    rows = measure(counts, readings, args.devices, runs, args.postgres)
    result = {
        "machine": f"{host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "format": FORMAT,
        "scale_out": rows,
    }
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
