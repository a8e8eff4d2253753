"""The notifier's Prometheus metrics, on their own registry (served on ``notifier_metrics_port``)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class NotifierMetrics:
    registry: CollectorRegistry
    deliveries: Counter
    seconds: Histogram
    escalations: Counter


def create_notifier_metrics() -> NotifierMetrics:
    reg = CollectorRegistry()
    return NotifierMetrics(
        registry=reg,
        deliveries=Counter("tonewatch_deliveries", "Delivery attempts by destination kind and outcome "
                           "(delivered|retry|dead_letter|duplicate).", ["kind", "outcome"], registry=reg),
        seconds=Histogram("tonewatch_delivery_seconds", "Duration of one delivery attempt.", ["kind"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=reg),
        escalations=Counter("tonewatch_escalations", "Re-notifications of unacknowledged critical alerts.",
                            registry=reg),
    )
