"""Smoke test: the platform benchmark runs end to end and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_platform_benchmark_runs_and_reports_figures(tmp_path: Path) -> None:
    """A tiny run prints the Markdown table and writes positive figures to JSON."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.platform", "--updates", "1000"]
    cmd += ["--entities", "500", "--history", "5000", "--samples", "100", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "| batch upsert (100 entities x 5 Properties) |" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["batch_upsert"]["updates"] == 1000
    assert figures["batch_upsert"]["updates_per_s"] > 0
    assert 0 < figures["get_entity"]["p50_ms"] <= figures["get_entity"]["p99_ms"]
    assert figures["temporal_last_n_100"]["n"] >= 50
