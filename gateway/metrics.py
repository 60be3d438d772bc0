"""A small Prometheus text-format registry (exposition format 0.0.4) for the gateway."""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DEVICE_LABELS = 200  # distinct device label values; more are folded into device="other"
OTHER = "other"  # not a device id: those have a dash (<kind>-<n>)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in pairs
    )
    return "{" + body + "}"


def _number(value: float) -> str:
    """A sample value in full: ``:g`` kept six digits, so counters past 999,999 and Unix
    timestamps came out rounded (1.23457e+06)."""
    value = float(value)  # ints are given too (gauges of counts)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class DeviceLabels:
    """The ``device`` label values of the gateway's series, bounded.

    Every distinct label value is a series, so invented device ids grew /metrics without end
    (300 of them added 20 KB).  Only a device the gateway has accepted a reading from gets its
    id as label, and only the first ``limit`` such devices; every other sample counts under
    ``device="other"`` (and in ``r197_gateway_device_labels_folded_total``), so totals stay
    right while the number of series stays bounded.
    """

    def __init__(self, metrics: Metrics, limit: int = DEVICE_LABELS) -> None:
        self.metrics = metrics
        self.limit = limit
        self._given: set[str] = set()

    def __len__(self) -> int:
        return len(self._given)

    def label(self, device: str | None, *, known: bool) -> str:
        """``device`` if it has (or may now get) its own label, else ``"other"``."""
        if device is not None:
            if device in self._given:
                return device
            if known and len(self._given) < self.limit:
                self._given.add(device)
                self.metrics.set("r197_gateway_device_labels", len(self._given))
                return device
        self.metrics.inc("r197_gateway_device_labels_folded_total")
        return OTHER


class Metrics:
    """Counters with labels, gauges and one latency histogram."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self.gauges: dict[str, float] = {}
        self.help: dict[str, str] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        self._count = 0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        # One label needs no sorting.
        key = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        self.add(name, key, amount)

    def add(self, name: str, key: tuple[tuple[str, str], ...], amount: float = 1.0) -> None:
        """:meth:`inc` with the labels already as a sorted key (the per-reading calls)."""
        series = self.counters[name]
        series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        if not labels:
            return sum(self.counters.get(name, {}).values())
        key = tuple(sorted(labels.items()))
        return self.counters.get(name, {}).get(key, 0.0)

    def set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def observe_latency(self, seconds: float) -> None:
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds
        self._count += 1

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self.counters):
            lines.append(f"# TYPE {name} counter")
            for key, value in sorted(self.counters[name].items()):
                lines.append(f"{name}{_labels(key)} {_number(value)}")
        for name in sorted(self.gauges):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {_number(self.gauges[name])}")
        hist = "r197_gateway_e2e_latency_seconds"
        lines.append(f"# HELP {hist} device timestamp to platform confirmation")
        lines.append(f"# TYPE {hist} histogram")
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, self._buckets, strict=False):
            running += count
            lines.append(f'{hist}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{hist}_bucket{{le="+Inf"}} {self._count}')
        lines.append(f"{hist}_sum {_number(self._sum)}")
        lines.append(f"{hist}_count {self._count}")
        return "\n".join(lines) + "\n"
