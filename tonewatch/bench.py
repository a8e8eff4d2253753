"""``tonewatch bench``: end-to-end throughput and latency, Triton's ceiling, and the pipeline alone.

Three figures from one run, so their ratio means something: the real worker on the real
models (``e2e_msgs_per_s``), what Triton sustains for the same model pair when nothing else
is in the way (``triton_max_msgs_per_s``), and the same worker with both models swapped for
the trivial ones in ``benchmarks/trivial_repo`` (``pipeline_only_msgs_per_s``).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tonewatch.core.kafka_io import ensure_topics, iter_topic, producer
from tonewatch.core.settings import Settings
from tonewatch.perf.latency_runs import LatencyOptions
from tonewatch.perf.workload import bench_messages
from tonewatch.replay import wait_for_pipeline

PIPELINE_MESSAGES_PER_E2E = 25  # pipeline-only messages per end-to-end message


def _wait_processed(settings: Settings, deadline: float) -> None:
    """Until the worker has committed every input and trend event now on the topics: its outputs are all written
    then (offsets are committed with, or after, them). Offsets of the outputs themselves would count
    transaction markers as records. Rates come from record timestamps, so polling does not blur them."""
    left = wait_for_pipeline(settings, max(deadline - time.monotonic(), 0.0), interval_s=0.5)
    if any(left.values()):
        raise TimeoutError(f"the worker had not caught up before the deadline: {left}")


def _produce(prod: Any, topic: str, msgs: list[dict[str, Any]]) -> dict[str, float]:
    """Send ``msgs`` and wait until all are acknowledged; returns each id's send time."""
    sent: dict[str, float] = {}
    for m in msgs:
        sent[m["id"]] = time.time()
        prod.send(topic, key=m["id"].encode(), value=json.dumps(m).encode())
    prod.flush()
    return sent


def measure(settings: Settings, n: int = 2000, timeout_s: float = 600.0) -> dict[str, Any]:
    """Produce ``n`` messages at once and time them through the running worker.

    One warm-up message goes first and the clock starts once it is scored, so worker start-up
    and the first Triton call are not counted as throughput.
    """
    scored_topic = settings.kafka.topic("scored")
    ensure_topics(settings.kafka, [settings.kafka.topic("news")])
    run = uuid.uuid4().hex[:8]
    deadline = time.monotonic() + timeout_s
    prod = producer(settings.kafka)
    _produce(prod, settings.kafka.topic("news"), bench_messages(1, f"{run}-warmup"))
    _wait_processed(settings, deadline)
    t0 = time.time()
    produced = _produce(prod, settings.kafka.topic("news"), bench_messages(n, run))
    prod.close()
    t_produced = time.time()
    _wait_processed(settings, deadline)
    t_trends = time.time()
    latencies = []
    first_scored, t_scored = float("inf"), 0.0
    for r in iter_topic(settings.kafka, scored_topic):
        rid = json.loads(r.value)["id"]
        if rid in produced:
            ts = r.timestamp / 1000  # set by the worker's producer when it sent the scored record
            first_scored, t_scored = min(first_scored, ts), max(t_scored, ts)
            latencies.append((ts - produced[rid]) * 1000)
    lat = np.array(latencies)
    return {
        "messages": n,
        "e2e_msgs_per_s": round(n / max(t_scored - t0, 1e-6), 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "produce_msgs_per_s": round(n / (t_produced - t0), 1),
        "scoring_msgs_per_s": round(n / max(t_scored - first_scored, 1e-6), 1),
        "trends_caught_up_s": round(t_trends - t0, 2),
        "batch_size": settings.scoring.batch_size,
    }


def drain(settings: Settings, n: int, start_worker: Callable[[Settings], object], timeout_s: float = 600.0
          ) -> dict[str, Any]:
    """The worker's own rate: ``n`` messages wait on the topic before it starts, then it works them off.

    Measured between the first and last scored record's broker timestamps, so neither the worker's
    start-up nor this process's producer (a Python producer on the same cores) is counted.
    """
    from tonewatch.core.topics import NAMES, state_changelog

    ensure_topics(settings.kafka, [settings.kafka.topic(t) for t in NAMES])
    prod = producer(settings.kafka)
    try:
        ids = set(_produce(prod, settings.kafka.topic("news"), bench_messages(n, uuid.uuid4().hex[:8])))
    finally:
        prod.close()
    deadline = time.monotonic() + timeout_s
    start_worker(settings)
    t0 = time.time()
    _wait_processed(settings, deadline)
    through_trends_s = time.time() - t0
    stamps = sorted(r.timestamp / 1000 for r in iter_topic(settings.kafka, settings.kafka.topic("scored"))
                    if json.loads(r.value)["id"] in ids)
    span = max(stamps[-1] - stamps[0], 1e-6)
    # the windows agent writes its table's changelog once per key per batch: its last record is when the
    # last message's trend events were folded, so first scored -> last changelog is the whole pipeline
    folded = max(r.timestamp / 1000 for r in iter_topic(settings.kafka, state_changelog(settings)))
    return {"messages": n, "drain_msgs_per_s": round((len(stamps) - 1) / span, 1),
            "drain_through_windows_msgs_per_s": round(len(stamps) / max(folded - stamps[0], 1e-6), 1),
            "start_to_through_trends_s": round(through_trends_s, 2)}


def pipeline_only(settings: Settings, n: int, work_dir: Path, latency: LatencyOptions | None = None
                  ) -> dict[str, Any]:
    """The same worker on the same Kafka, both models trivial: what the pipeline itself sustains.

    Two ways: live (messages produced while the worker runs, as ``measure`` does) and drain (a
    backlog waiting before the worker starts, see ``drain``): the headline figure is the drain rate.
    With ``latency``, then the open-loop curve and surge-to-alert time against the drain rate (perf/latency_runs.py).
    """
    from tonewatch.perf.trivial import start_trivial_triton
    from tonewatch.stack import worker_env
    from tonewatch.stack.procs import free_port, spawn, stop
    from tonewatch.stack.triton import stop_triton

    triton, local = start_trivial_triton(settings, work_dir / "triton-trivial")
    pids: list[int] = []

    def start_worker(s: Settings) -> int:
        pids.append(spawn([sys.executable, "-m", "tonewatch", "worker"],
                          work_dir / "logs" / f"worker-trivial-{len(pids)}.log", env=worker_env(s)))
        return pids[-1]

    def fresh(s: Settings) -> Settings:
        return s.updated(kafka__topic_prefix=f"{settings.kafka.topic_prefix}-p{uuid.uuid4().hex[:6]}",
                                    scoring__metrics_port=free_port())

    try:
        live = fresh(local)
        start_worker(live)
        result = measure(live, n)
        result["through_trends_msgs_per_s"] = round(n / max(result["trends_caught_up_s"], 1e-6), 1)
        stop(pids[-1], timeout_s=30)
        out = {"live": result, "drain": drain(fresh(local), n, start_worker)}
        stop(pids[-1], timeout_s=30)
        if latency is not None:  # while the trivial Triton is up; the drain's rate is the open loop's ceiling
            from tonewatch.perf.latency_runs import run_latency

            out["latency"] = run_latency(lambda: fresh(local), start_worker, out["drain"]["drain_msgs_per_s"],
                                         latency, work_dir, progress=_progress)
        return out
    finally:
        for pid in pids:
            stop(pid, timeout_s=30)
        stop_triton(triton)


def _progress(result: dict[str, Any]) -> None:
    """Figures so far on stderr: a long run that fails late still shows what it measured."""
    print(f"bench so far: {json.dumps(result)}", file=sys.stderr, flush=True)


def run_bench(settings: Settings, n: int = 2000, timeout_s: float = 600.0, latency: LatencyOptions | None = None
              ) -> dict[str, Any]:
    """All figures of ``make bench``, one dict; ``settings`` point at a running stack and worker. With ``latency``
    also ``open_loop`` and ``surge_to_alert`` on the trivial models (tonewatch/perf/latency_runs.py)."""
    from tonewatch.perf.ceiling import triton_ceiling

    result = measure(settings, n, timeout_s)
    _progress(result)
    models = (settings.triton.sentiment_model, settings.triton.topic_model)
    sent = [m["text"] for m in bench_messages(n)]  # the same workload as the end-to-end figure
    ceiling, method = triton_ceiling(settings.triton.grpc_url, models, sent, batch=settings.scoring.batch_size,
                                     concurrency=4)
    result["triton_max_msgs_per_s"] = round(ceiling, 1)
    result["triton_max_method"] = method
    result["ratio"] = round(result["e2e_msgs_per_s"] / max(ceiling, 1e-9), 3)
    _progress(result)
    # the pipeline alone drains 10,000 messages too fast to measure: 25x gives a drain long enough
    pipeline_n = PIPELINE_MESSAGES_PER_E2E * n
    pipeline = pipeline_only(settings, pipeline_n, settings.run_dir.resolve() / "bench", latency)
    result.update(pipeline.get("latency", {}))
    live, drained = pipeline["live"], pipeline["drain"]
    result["pipeline_only_msgs_per_s"] = drained["drain_msgs_per_s"]
    result["pipeline_only"] = {
        "messages": pipeline_n, "drain_msgs_per_s": drained["drain_msgs_per_s"],
        "drain_through_windows_msgs_per_s": drained["drain_through_windows_msgs_per_s"],
        "drain_through_trends_s": drained["start_to_through_trends_s"],
        "live_msgs_per_s": live["e2e_msgs_per_s"], "live_p50_ms": live["p50_ms"], "live_p99_ms": live["p99_ms"],
        "live_through_trends_msgs_per_s": live["through_trends_msgs_per_s"],
    }
    if settings.store.dsn is not None:  # the stack's PostgreSQL (absent without make system): the sink's own rate
        from tonewatch.perf.sink_bench import measure_sink

        _progress(result)
        result["sink"] = measure_sink(settings, pipeline_n)
        result["sink_rows_per_s"] = result["sink"]["rows_per_s"]
        # above 1: the sink writes the scored rows of one worker's pipeline-only rate with room to spare
        result["sink_vs_pipeline_only"] = round(result["sink"]["scored_rows_per_s"] /
                                                max(result["pipeline_only_msgs_per_s"], 1e-9), 2)
    return result
