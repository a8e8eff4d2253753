"""The sink's metrics on ``/metrics`` (docs/store.md): rows written, errors, lag and batch time."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tonewatch.store.rows import KINDS


@dataclass(frozen=True)
class SinkMetrics:
    registry: CollectorRegistry
    rows: Counter
    errors: Counter
    lag: Gauge
    batch_seconds: Histogram


def create_sink_metrics() -> SinkMetrics:
    reg = CollectorRegistry()
    metrics = SinkMetrics(
        registry=reg,
        rows=Counter("tonewatch_sink_rows", "Rows written to the store, by kind.", ["kind"], registry=reg),
        errors=Counter("tonewatch_sink_errors", "Sink failures: database (a failed write or connection, retried) "
                       "or invalid (a record dead-lettered).", ["reason"], registry=reg),
        lag=Gauge("tonewatch_sink_lag", "Records the sink is behind, per partition.", ["topic", "partition"],
                  registry=reg),
        batch_seconds=Histogram("tonewatch_sink_batch_seconds", "Writing and committing one batch.",
                                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=reg),
    )
    for kind in KINDS:  # every series from the start, at 0 (as the notifier's)
        metrics.rows.labels(kind)
    for reason in ("database", "invalid"):
        metrics.errors.labels(reason)
    return metrics
