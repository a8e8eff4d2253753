"""``tonewatch bench``: end-to-end throughput and latency, Triton's ceiling, and the pipeline alone.

Three figures from one run, so their ratio means something: the real worker on the real
models (``e2e_msgs_per_s``), what Triton sustains for the same model pair when nothing else
is in the way (``triton_max_msgs_per_s``), and the same worker with both models swapped for
the trivial ones in ``benchmarks/trivial_repo`` (``pipeline_only_msgs_per_s``).
"""

from __future__ import annotations

import csv
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tonewatch.feed import DATA
from tonewatch.kafka_io import ensure_topics, group_lag, iter_topic, producer, topic_size
from tonewatch.settings import Settings

WARMUP_ID = "bench-warmup"


def _texts() -> list[str]:
    with (DATA / "news_sentiment.csv").open(encoding="utf-8", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def bench_messages(n: int) -> list[dict[str, Any]]:
    """Real headlines, cycled to ``n``, event times spread over the last few minutes."""
    texts = _texts()
    now = datetime.now(UTC)
    return [
        {"id": f"bench-{i}", "source": "news", "text": texts[i % len(texts)],
         "ts": (now - timedelta(seconds=(n - i) * 180 / n)).isoformat().replace("+00:00", "Z")}
        for i in range(n)
    ]


def _size(settings: Settings, topic: str) -> int:
    try:
        return topic_size(settings, topic)
    except Exception:  # kafka-python's offset lookup fails (AttributeError) while a new topic has no leader
        return -1


def _wait_size(settings: Settings, topic: str, n: int, deadline: float) -> None:
    while (size := _size(settings, topic)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {size}/{n} records on {topic} before the deadline")
        time.sleep(0.2)


def measure(settings: Settings, n: int = 2000, timeout_s: float = 600.0, wait_trends: bool = True) -> dict[str, Any]:
    """Produce ``n`` messages at once and time them through the running worker.

    One warm-up message goes first and the clock starts once it is scored, so worker start-up
    and the first Triton call are not counted as throughput.
    """
    scored_topic = settings.topic("scored")
    ensure_topics(settings, [settings.topic("news")])
    prod = producer(settings)
    deadline = time.monotonic() + timeout_s
    warm = bench_messages(1)[0] | {"id": WARMUP_ID}
    prod.send(settings.topic("news"), key=WARMUP_ID.encode(), value=json.dumps(warm).encode())
    prod.flush()
    _wait_size(settings, scored_topic, 1, deadline)
    base = _size(settings, scored_topic)
    produced: dict[str, float] = {}
    t0 = time.time()
    for m in bench_messages(n):
        produced[m["id"]] = time.time()
        prod.send(settings.topic("news"), key=m["id"].encode(), value=json.dumps(m).encode())
    prod.flush()
    prod.close()
    t_produced = time.time()
    _wait_size(settings, scored_topic, base + n, deadline)
    t_scored = time.time()
    while wait_trends and group_lag(settings, settings.topic("trend-events")) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    t_trends = time.time()
    latencies = []
    first_scored = float("inf")
    for r in iter_topic(settings, scored_topic):
        rid = json.loads(r.value)["id"]
        if rid in produced:
            ts = r.timestamp / 1000
            first_scored = min(first_scored, ts)
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


def pipeline_only(settings: Settings, n: int, work_dir: Path) -> dict[str, Any]:
    """The same worker on the same Kafka, both models trivial: what the pipeline itself sustains."""
    from tonewatch.perf.trivial import start_trivial_triton
    from tonewatch.stack import worker_env
    from tonewatch.stack.procs import free_port, spawn, stop
    from tonewatch.stack.triton import stop_triton

    triton, local = start_trivial_triton(settings, work_dir / "triton-trivial")
    local = local.model_copy(update={"topic_prefix": f"{settings.topic_prefix}-p{uuid.uuid4().hex[:6]}",
                                     "metrics_port": free_port()})
    pid = spawn([sys.executable, "-m", "tonewatch", "worker"], work_dir / "logs" / "worker-trivial.log",
                env=worker_env(local))
    try:
        result = measure(local, n)
        result["through_trends_msgs_per_s"] = round(n / max(result["trends_caught_up_s"], 1e-6), 1)
        return result
    finally:
        stop(pid, timeout_s=30)
        stop_triton(triton)


def _progress(result: dict[str, Any]) -> None:
    """Figures so far on stderr: a long run that fails late still shows what it measured."""
    print(f"bench so far: {json.dumps(result)}", file=sys.stderr, flush=True)


def run_bench(settings: Settings, n: int = 2000, timeout_s: float = 600.0) -> dict[str, Any]:
    """All figures of ``make bench``, one dict; ``settings`` point at a running stack and worker."""
    from tonewatch.perf.ceiling import triton_ceiling

    result = measure(settings, n, timeout_s)
    _progress(result)
    models = (settings.sentiment_model, settings.topic_model)
    ceiling, method = triton_ceiling(settings.triton_grpc_url, models, _texts()[:512], batch=settings.batch_size,
                                     concurrency=4)
    result["triton_max_msgs_per_s"] = round(ceiling, 1)
    result["triton_max_method"] = method
    result["e2e_to_triton_max"] = round(result["e2e_msgs_per_s"] / max(ceiling, 1e-9), 3)
    _progress(result)
    pipeline = pipeline_only(settings, 5 * n, settings.run_dir.resolve() / "bench")
    result["pipeline_only_msgs_per_s"] = pipeline["e2e_msgs_per_s"]
    result["pipeline_only"] = {k: pipeline[k] for k in ("messages", "p50_ms", "p99_ms", "scoring_msgs_per_s",
                                                          "through_trends_msgs_per_s")}
    return result
