"""What the dashboard shows of the gateway: its /health (JSON) and its /metrics (Prometheus
text exposition format 0.0.4), read over HTTP like any monitoring system would."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line; comments and bad lines are skipped."""
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match.group(3) or ""))
        try:
            out.append((match.group(1), labels, float(match.group(4))))
        except ValueError:
            continue
    return out


def rejected_by_device(text: str) -> dict[str, dict[str, float]]:
    """device -> reason -> rejected readings (r197_gateway_rejected_total{reason,device});
    readings the platform refused carry no device and count under ``""``."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples(text):
        if name == "r197_gateway_rejected_total":
            device, reason = labels.get("device", ""), labels.get("reason", "?")
            out[device][reason] = out[device].get(reason, 0.0) + value
    return dict(out)


def totals(text: str) -> dict[str, Any]:
    """The unlabelled sums of the pipeline's counters by protocol."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples(text):
        if name.startswith("r197_gateway_") and name.endswith("_total") and "device" not in labels:
            key = labels.get("protocol") or labels.get("reason") or "all"
            out[name.removeprefix("r197_gateway_")][key] = value
    return dict(out)
