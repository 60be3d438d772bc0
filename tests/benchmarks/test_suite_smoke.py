"""CI's smoke run of the benchmark suite: every workload runs and reports its figures.

Speed is not asserted (the figures are printed and kept in the JSON); what is checked is that
each workload ran end to end and measured something.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def positive(figure: dict[str, float]) -> bool:
    return all(math.isfinite(figure[k]) and figure[k] > 0 for k in ("median", "min", "max"))


@pytest.mark.slow
def test_quick_benchmark_suite_runs_every_workload(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--runs", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    print(done.stdout)  # the table, for the CI log
    assert done.returncode == 0, done.stderr[-2000:]
    [report] = tmp_path.glob("bench-quick-*.json")
    result = json.loads(report.read_text())
    assert (tmp_path / report.name.replace(".json", ".md")).read_text() in done.stdout + "\n"
    assert positive(result["broker_ceiling"]["qos0"])
    assert positive(result["broker_ceiling"]["qos1"])
    paths = {g["path"] for g in result["gateway"].values()}
    assert paths == {
        "senml-cbor", "senml-json", "vendor-json", "coap-push", "coap-observe",
        "senml-cbor over TLS",
    }  # fmt: skip
    assert all(positive(g["readings_per_s"]) for g in result["gateway"].values())
    assert [lat["offered_per_s"] for lat in result["latency"]] == [500.0, 2000.0]
    assert all(positive(lat["p99_ms"]) for lat in result["latency"])
    assert result["scale"]["devices"] == 1000
    assert positive(result["scale"]["rss_mb"])
    assert {(w["protocol"], w["format"]) for w in result["wire"]} >= {
        ("MQTT 3.1.1 QoS 1", "senml-cbor"), ("CoAP CON POST", "senml-json")
    }  # fmt: skip
    assert result["idle_mqtt"]["app_bytes_per_cycle"] >= 4  # PINGREQ + PINGRESP, 2 bytes each
    assert result["idle_coap"]["app_bytes_per_refresh"] >= 8  # two CoAP headers, 4 bytes each
    assert positive(result["platform"]["upsert_updates_per_s"])
    assert positive(result["platform"]["postgresql"]["upsert_updates_per_s"])
    assert positive(result["platform"]["postgresql"]["last_n_p99_ms"])
    peer = result["peer"]
    assert "error" not in peer, peer.get("error")
    assert peer["peer"].startswith("Node-RED")
    assert positive(peer["throughput"]["peer"]["readings_per_s"])
    assert positive(peer["latency"]["peer"]["p99_ms"])
    assert positive(peer["throughput"]["ratio_ours_to_peer"])
    influx = result["influx"]  # every point reached VictoriaMetrics, or the run failed
    for mode in ("off", "on", "outage"):
        assert positive(influx[f"{mode}_updates_per_s"]), mode
        assert positive(influx[f"{mode}_cpu_s_per_1000"]), mode
    assert positive(influx["drain_s"])
    rows = result["scaleout"]["rows"]  # each run stored every reading exactly once, or failed
    assert [r["gateways"] for r in rows] == [1, 2]
    assert all(positive(r) for r in rows)  # median, min and max readings/s of each row
