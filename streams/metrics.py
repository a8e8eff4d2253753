"""The worker's Prometheus metrics: one registry per app, created by the factory, never at import."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# per-key gauges only for bounded dimensions: tickers are unbounded and live in the trends topic
GAUGE_DIMENSIONS = frozenset({"sector", "topic", "source"})
# label sets exported at 0 from the start: increase() cannot see a series' first value, so without
# these the first alert per label set after a worker start would never show on a dashboard
ALERT_LABELS = [(status, severity, dim) for status in ("firing", "resolved") for severity in ("warning", "critical")
                for dim in ("ticker", "sector", "topic", "source")]


@dataclass(frozen=True)
class PipelineMetrics:
    registry: CollectorRegistry
    messages_in: Counter
    scored: Counter
    dead_letter: Counter
    duplicates: Counter
    trend_replays: Counter
    offset_holes: Counter
    producer_restarts: Counter
    batch_size: Histogram
    inference_seconds: Histogram
    trend_events: Counter
    alerts: Counter
    negative_share: Gauge
    corrected_share: Gauge
    window_volume: Gauge
    consumer_lag: Gauge
    model_version_info: Gauge
    canary_share: Gauge
    drift_psi: Gauge
    watermark: Gauge
    keys_evicted: Counter
    table_keys: Gauge


def create_metrics() -> PipelineMetrics:
    r = CollectorRegistry()
    m = PipelineMetrics(
        registry=r,
        messages_in=Counter("tonewatch_messages_in", "Messages read from the input topics.", ["topic"], registry=r),
        scored=Counter("tonewatch_messages_scored", "Messages scored and written.", ["source"], registry=r),
        dead_letter=Counter("tonewatch_dead_letter", "Records sent to the dead-letter topic.", ["stage"], registry=r),
        duplicates=Counter("tonewatch_duplicates", "Input records whose message id this worker already scored.",
                           registry=r),
        trend_replays=Counter("tonewatch_trend_replays", "Trend-event records re-read after a restart whose key "
                              "state already held them (skipped, not counted twice).", registry=r),
        offset_holes=Counter("tonewatch_offset_holes", "Records the consumer skipped after a restart: 'seek' reads the "
                             "partition again from one, 'skip' commits over offsets absent after re-reads.",
                             ["action"], registry=r),
        producer_restarts=Counter("tonewatch_producer_restarts", "Score-stage producers replaced because a "
                                  "transaction could not be aborted (fenced or in a fatal state).", registry=r),
        batch_size=Histogram("tonewatch_batch_size", "Input records per score-stage batch (one getmany, one "
                             "commit); Triton gets them in requests of TONEWATCH_SCORING__BATCH_SIZE.", registry=r,
                             buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
        inference_seconds=Histogram("tonewatch_inference_seconds", "Triton round trip per micro-batch, both models.",
                                    registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        trend_events=Counter("tonewatch_trend_events", "Per-key trend updates.", ["dimension"], registry=r),
        alerts=Counter("tonewatch_alerts", "Alert transitions published.", ["status", "severity", "dimension"],
                       registry=r),
        negative_share=Gauge("tonewatch_negative_share", "Negative share of the open window.", ["dimension", "key"],
                             registry=r),
        corrected_share=Gauge("tonewatch_corrected_share", "Estimated true negative share of the open window, "
                              "corrected for the model's error rates per source.", ["dimension", "key"], registry=r),
        window_volume=Gauge("tonewatch_window_volume", "Messages in the open window.", ["dimension", "key"],
                            registry=r),
        consumer_lag=Gauge("tonewatch_consumer_lag", "Records behind the partition's end, per assigned partition.",
                           ["topic", "partition"], registry=r),
        model_version_info=Gauge("tonewatch_model_version_info", "Versions this worker routes to (value 1).",
                                 ["model", "version", "role"], registry=r),
        canary_share=Gauge("tonewatch_canary_share", "Share of message ids routed to the canary version.",
                           ["model"], registry=r),
        drift_psi=Gauge("tonewatch_drift_psi", "PSI of recent predictions vs the serving version's reference.",
                        ["model", "kind"], registry=r),
        watermark=Gauge("tonewatch_watermark_seconds", "Event-time watermark per trend-events partition: windows "
                        "whose end plus the allowed lateness is before it are closed (Unix seconds).",
                        ["partition"], registry=r),
        keys_evicted=Counter("tonewatch_keys_evicted", "Idle keys deleted from the windows table (with a changelog "
                             "tombstone) once the watermark passed their TTL.", ["dimension"], registry=r),
        table_keys=Gauge("tonewatch_table_keys", "Keys in the windows table per trend-events partition, once the "
                         "partition has been indexed.", ["partition"], registry=r),
    )
    for labels in ALERT_LABELS:
        m.alerts.labels(*labels)
    for source in ("news", "chat"):
        m.scored.labels(source)
    for action in ("seek", "skip"):
        m.offset_holes.labels(action)
    return m
