"""``tonewatch bench``: end-to-end throughput and produce->scored latency on the local stack."""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tonewatch.feed import DATA
from tonewatch.kafka_io import ensure_topics, group_lag, iter_topic, producer, topic_size
from tonewatch.settings import Settings


def bench_messages(n: int) -> list[dict[str, Any]]:
    """Real headlines, cycled to ``n``, event times spread over the last few minutes."""
    with (DATA / "news_sentiment.csv").open(encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    now = datetime.now(UTC)
    return [
        {"id": f"bench-{i}", "source": "news", "text": texts[i % len(texts)],
         "ts": (now - timedelta(seconds=(n - i) * 180 / n)).isoformat().replace("+00:00", "Z")}
        for i in range(n)
    ]


def run_bench(settings: Settings, n: int = 2000, timeout_s: float = 600.0) -> dict[str, Any]:
    """Produce ``n`` messages at once and time them through the running worker."""
    ensure_topics(settings, [settings.topic("news")])
    prod = producer(settings)
    produced: dict[str, float] = {}
    t0 = time.time()
    for m in bench_messages(n):
        produced[m["id"]] = time.time()
        prod.send(settings.topic("news"), key=m["id"].encode(), value=json.dumps(m).encode())
    prod.flush()
    prod.close()
    t_produced = time.time()
    deadline = time.monotonic() + timeout_s
    while topic_size(settings, settings.topic("scored")) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {topic_size(settings, settings.topic('scored'))}/{n} scored in {timeout_s}s")
        time.sleep(0.2)
    t_scored = time.time()
    while group_lag(settings, settings.topic("trend-events")) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    t_trends = time.time()
    latencies = []
    first_scored = float("inf")
    for r in iter_topic(settings, settings.topic("scored")):
        ts = r.timestamp / 1000
        first_scored = min(first_scored, ts)
        rid = json.loads(r.value)["id"]
        if rid in produced:
            latencies.append((ts - produced[rid]) * 1000)
    lat = np.array(latencies)
    return {
        "messages": n,
        "e2e_msgs_per_s": round(n / (t_scored - t0), 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "produce_msgs_per_s": round(n / (t_produced - t0), 1),
        "scoring_msgs_per_s": round(n / max(t_scored - first_scored, 1e-6), 1),
        "trends_caught_up_s": round(t_trends - t0, 2),
        "batch_size": settings.batch_size,
    }
