"""InfluxDB-sink overhead: the platform's batch-upsert workload without and with the sink.

Three platforms in turn, each on a fresh SQLite file seeded with the same entities, each taking
the same batch upserts (benchmarks/platform.py: 100 entities x 5 Properties with observedAt, so
every update is one history row and one InfluxDB point):

- ``off``: no sink (the baseline);
- ``on``: the sink writing to a VictoriaMetrics on [::1] (Debian's victoria-metrics, which takes
  influxdb-client's /api/v2/write as InfluxDB 2 does), on the same two cores;
- ``outage``: the sink with its server away (a port nobody listens on): the outbox only.

Each reports attribute updates/s and the platform's CPU seconds per 1,000 updates; ``on`` also
the seconds from the last answered upsert until the outbox is empty, and how many points
VictoriaMetrics holds then (it must be every update: the run fails otherwise).

    python -m benchmarks.influx --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks import platform as plat
from testbed.parts import platform_spec
from testbed.processes import ManagedProcess, free_port
from testbed.victoria import Victoria

MODES = ("off", "on", "outage")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tmp: Path, mode: str, vm: Victoria, args: argparse.Namespace) -> dict[str, float]:
    db = tmp / f"{mode}.db"
    for stale in tmp.glob(f"{mode}.db*"):
        stale.unlink()
    asyncio.run(plat.seed(db, args.entities, args.entities * len(plat.PROPS)))
    flags: list[str] = []
    if mode != "off":
        url = vm.url if mode == "on" else f"http://[::1]:{free_port()}"
        flags = ["--influx", url, "--influx-org", "r197", "--influx-bucket", "bench"]
    port = free_port()
    spec = replace(platform_spec(port=port, db=db, verbose=0, influx=flags), start_timeout=60)
    process = ManagedProcess(spec, log_path=tmp / f"{mode}.log")
    before = vm.samples('{__name__="Bench_p0"}') * len(plat.PROPS) if mode == "on" else 0
    with process:
        pid = process.pid
        assert pid is not None
        cpu0 = cpu_seconds(pid)
        api = f"http://[::1]:{port}/ngsi-ld/v1"
        up = asyncio.run(plat.bench_upsert(api, args.updates, args.entities, args.clients))
        cpu = cpu_seconds(pid) - cpu0
        out: dict[str, float] = {
            "updates_per_s": up["updates_per_s"],
            "cpu_s_per_1000": cpu / up["updates"] * 1000,
        }
        if mode != "off":
            began = time.perf_counter()
            while True:
                status = httpx.get(f"http://[::1]:{port}/health", timeout=10).json()["influx"]
                if mode == "outage" or status["outbox"] == 0:
                    break
                if time.perf_counter() - began > 300:
                    raise RuntimeError(f"outbox not drained in 300 s: {status}")
                time.sleep(0.05)
            if mode == "on":
                out["drain_s"] = time.perf_counter() - began
                delivered = vm.samples('{__name__=~"Bench_p[0-4]"}') - before
                if delivered != up["updates"]:
                    raise RuntimeError(
                        f"VictoriaMetrics holds {delivered} new points, not {up['updates']}"
                    )
                out["delivered"] = delivered
            else:
                out["outbox"] = status["outbox"]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="r197-bench-influx-") as name:
        tmp = Path(name)
        vm = Victoria(free_port(), tmp / "vm")
        with vm.process:
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
            for n in range(args.repeats):
                for mode in MODES:  # interleaved: load from elsewhere hits every mode alike
                    log(f"influx sink {mode}: {args.updates:,} updates, run {n + 1}")
                    runs[mode].append(one_run(tmp, mode, vm, args))
    median = {
        mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()
    }
    return {
        "machine": f"{host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "updates": args.updates,
        "entities": args.entities,
        "median": median,
        "overhead_updates_per_s": 1
        - median["on"]["updates_per_s"] / median["off"]["updates_per_s"],
        "runs": runs,
    }


def table(result: dict[str, Any]) -> str:
    m = result["median"]
    rows = [
        f"| no sink | {m['off']['updates_per_s']:,.0f} | {m['off']['cpu_s_per_1000']:.3f} | |",
        f"| sink, VictoriaMetrics up | {m['on']['updates_per_s']:,.0f} | "
        f"{m['on']['cpu_s_per_1000']:.3f} | all {m['on']['delivered']:,.0f} points there "
        f"{m['on']['drain_s']:.2f} s after the last upsert |",
        f"| sink, server away (outbox only) | {m['outage']['updates_per_s']:,.0f} | "
        f"{m['outage']['cpu_s_per_1000']:.3f} | {m['outage']['outbox']:,.0f} points kept |",
    ]
    return "\n".join([
        f"InfluxDB sink overhead ({result['machine']}, {result['date']}): batch upsert of "
        f"{result['updates']:,} attribute updates, {result['entities']:,} entities, median of "
        f"{len(result['runs']['off'])} runs",
        "",
        "| platform | attribute updates/s | platform CPU s per 1,000 updates | InfluxDB side |",
        "|---|---|---|---|",
        *rows,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.influx",
        description="The platform's batch-upsert throughput without and with the InfluxDB sink "
        "(VictoriaMetrics on [::1] as the server).",
    )
    parser.add_argument("--quick", action="store_true", help="5,000 updates instead of 50,000")
    parser.add_argument("--updates", type=int, help="attribute updates per run")
    parser.add_argument("--entities", type=int, default=1000, help="entities upserted")
    parser.add_argument("--clients", type=int, default=4, help="concurrent upsert clients")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.updates = args.updates or (5_000 if args.quick else 50_000)
    result = run(args)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
