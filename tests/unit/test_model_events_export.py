"""The version and canary gauges a worker exports: before any rollout, and through one (no broker needed)."""

from __future__ import annotations

import json

from streams.control.model_events import EventFollower
from streams.control.routing import Route
from streams.metrics import PipelineMetrics, create_metrics
from tonewatch.core.settings import Settings


def _series(metrics: PipelineMetrics, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for m in metrics.registry.collect() for s in m.samples if s.name == name}


def test_served_version_is_production_until_an_event_names_one() -> None:
    metrics = create_metrics()
    follower = EventFollower(Settings().updated(kafka__bootstrap="127.0.0.1:1"), metrics)
    follower._served["sentiment"] = "1"  # what _export_served read from Triton at start
    follower.export("sentiment", Route(), "1")
    assert _series(metrics, "tonewatch_model_version_info") == {("sentiment", "1", "production"): 1.0}
    assert _series(metrics, "tonewatch_canary_share") == {("sentiment",): 0.0}

    follower.apply(json.dumps({"model": "sentiment", "version": 2, "event": "canary", "share": 0.2}).encode())
    assert _series(metrics, "tonewatch_model_version_info") == {
        ("sentiment", "1", "production"): 1.0, ("sentiment", "2", "candidate"): 1.0}
    assert _series(metrics, "tonewatch_canary_share") == {("sentiment",): 0.2}

    follower.apply(json.dumps({"model": "sentiment", "version": 2, "event": "promoted"}).encode())
    assert _series(metrics, "tonewatch_model_version_info") == {("sentiment", "2", "production"): 1.0}
    assert _series(metrics, "tonewatch_canary_share") == {("sentiment",): 0.0}
