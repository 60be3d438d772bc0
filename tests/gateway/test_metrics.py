"""The /metrics text: every sample in full, whatever its size."""

from __future__ import annotations

from gateway.metrics import Metrics


def test_large_counters_and_timestamps_are_not_rounded() -> None:
    metrics = Metrics()
    metrics.inc("r197_gateway_forwarded_total", 1_234_567)
    metrics.set("r197_gateway_last_forward_timestamp_seconds", 1_796_000_123.456789)
    metrics.set("r197_gateway_queued", 0)
    metrics.observe_latency(0.25)
    text = metrics.render().splitlines()
    assert "r197_gateway_forwarded_total 1234567" in text
    assert "r197_gateway_last_forward_timestamp_seconds 1796000123.456789" in text
    assert "r197_gateway_queued 0" in text
    assert "r197_gateway_e2e_latency_seconds_sum 0.25" in text


def test_labelled_counters_render_as_integers() -> None:
    metrics = Metrics()
    metrics.inc("r197_gateway_rejected_total", 3, device="noise-1", reason="malformed")
    assert 'r197_gateway_rejected_total{device="noise-1",reason="malformed"} 3' in (
        metrics.render().splitlines()
    )
