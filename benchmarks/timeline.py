"""Where the time goes during one throughput run: CPU per process every 0.1 s.

Starts the same stack as the gateway benchmark (Mosquitto, platform, gateway on [::1]), runs
one MQTT throughput run, and prints, for each interval, the readings the gateway forwarded per
second, the share of a core the gateway, platform and broker used (from /proc), and the idle
cores of the machine. The README's "what limits us" reads its two phases from this output.

    python -m benchmarks.timeline --devices 100 --readings 80000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import gateway as gw
from benchmarks.__main__ import Busy

TICK = os.sysconf("SC_CLK_TCK")


def idle_seconds() -> float:
    """Idle CPU seconds of the whole machine (all cores) since boot."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    return int(fields[3]) / TICK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.timeline",
        description="CPU per process every interval during one MQTT throughput run on [::1].",
    )
    parser.add_argument("--devices", type=int, default=100, help="device topics (100)")
    parser.add_argument("--readings", type=int, default=80_000, help="readings sent (80,000)")
    formats = ["senml-cbor", "senml-json", "vendor-json"]
    parser.add_argument("--format", default="senml-cbor", choices=formats, help="(senml-cbor)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds per row (0.1)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="r197-timeline-") as tmp, gw.Stack(Path(tmp)) as stack:
        print("warming up (2,000 readings)", flush=True)
        gw.throughput(stack, args.format, 2000, args.devices)
        rows: list[str] = []
        done = threading.Event()
        began = time.monotonic()

        def sample() -> None:
            busy, idle, last, forwarded = Busy(stack), idle_seconds(), began, stack.forwarded()
            while not done.is_set():
                time.sleep(args.interval)
                used, now, count = busy.used(), time.monotonic(), stack.forwarded()
                span = now - last
                shares = " ".join(f"{name} {cpu / span:4.2f}" for name, cpu in used.items())
                rows.append(
                    f"{now - began:6.2f} s  forwarded {(count - forwarded) / span:8,.0f}/s  "
                    f"busy: {shares}  idle cores {(idle_seconds() - idle) / span:4.2f}"
                )
                busy, idle, last, forwarded = Busy(stack), idle_seconds(), now, count

        sampler = threading.Thread(target=sample)
        sampler.start()
        result = gw.throughput(stack, args.format, args.readings, args.devices)
        done.set()
        sampler.join()
    print("\n".join(rows))
    print(
        f"{args.readings:,} readings, {args.devices:,} devices: {result['readings_per_s']:,.0f}/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
