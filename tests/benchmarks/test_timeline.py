"""Smoke test: the timeline runs one throughput run on the real stack and prints its rows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_timeline_prints_cpu_per_process_and_the_rate() -> None:
    cmd = [sys.executable, "-m", "benchmarks.timeline", "--devices", "10", "--readings", "5000"]
    cmd += ["--interval", "0.05"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "forwarded" in line]
    assert rows, done.stdout
    row = re.compile(r"forwarded +[\d,]+/s +busy: gateway [\d.]+ platform [\d.]+ broker [\d.]+")
    assert all(row.search(line) for line in rows), rows[0]
    total = re.search(r"5,000 readings, 10 devices: ([\d,]+)/s", done.stdout)
    assert total is not None, done.stdout
    assert int(total.group(1).replace(",", "")) > 0
