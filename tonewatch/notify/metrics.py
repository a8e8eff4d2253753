"""The notifier's Prometheus metrics, on their own registry (served on ``delivery.metrics_port``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram

from tonewatch.notify.subscriptions import Kind

OUTCOMES = ("delivered", "retry", "dead_letter", "duplicate")
INCIDENT_STATUSES = ("opened", "updated", "resolved")


@dataclass(frozen=True)
class NotifierMetrics:
    registry: CollectorRegistry
    deliveries: Counter
    seconds: Histogram
    escalations: Counter
    skipped_alerts: Counter
    incidents: Counter


def create_notifier_metrics() -> NotifierMetrics:
    reg = CollectorRegistry()
    metrics = NotifierMetrics(
        registry=reg,
        deliveries=Counter("tonewatch_deliveries", "Delivery attempts by destination kind and outcome "
                           "(delivered|retry|dead_letter|duplicate).", ["kind", "outcome"], registry=reg),
        seconds=Histogram("tonewatch_delivery_seconds", "Duration of one delivery attempt.", ["kind"],
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=reg),
        escalations=Counter("tonewatch_escalations", "Re-notifications of unacknowledged critical alerts.",
                            registry=reg),
        skipped_alerts=Counter("tonewatch_notifier_skipped_alerts", "Alerts-topic records that are not an alert "
                               "(not JSON, a wrong field), skipped.", registry=reg),
        incidents=Counter("tonewatch_incident_versions", "Incident versions published, by status "
                          "(opened|updated|resolved).", ["status"], registry=reg),
    )
    # every label set from the start, at 0: rate() and histogram_quantile() then see a notifier's first
    # delivery as an increase instead of a series that was born already counted
    for status in INCIDENT_STATUSES:
        metrics.incidents.labels(status)
    for kind in get_args(Kind):
        metrics.seconds.labels(kind)
        for outcome in OUTCOMES:
            metrics.deliveries.labels(kind, outcome)
    return metrics
