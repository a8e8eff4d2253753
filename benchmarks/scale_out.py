"""Scale-out on one machine: one worker against two, and one Triton instance against two (issue #32).

    .venv/bin/python -m benchmarks.scale_out workers [--messages 50000] [--runs 3]
    .venv/bin/python -m benchmarks.scale_out triton [--runs 2] [--seconds 20]

``workers``: on a Kafka and a trivial-models Triton of its own, the pipeline-only drain of ``tonewatch bench``
(tonewatch/bench.py ``drain``: a backlog waiting on the 4-partition input topic, first to last scored record)
by one worker, then by two in one consumer group, alternating, --runs times each.

``triton``: the serving ceiling of ``tonewatch bench`` (tonewatch/perf/ceiling.py, both served models, batches
of ``TONEWATCH_SCORING__BATCH_SIZE`` at concurrency 4) with one thread per model instance, as the local stack
runs them, and one instance of each model (the default), then two (``TONEWATCH_TRITON__CPU_INSTANCES=2``),
alternating.

Prints one JSON line per run, then the medians. Both share this machine's cores with everything they start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from models.triton_admin import load_model
from tonewatch.bench import drain
from tonewatch.core.settings import Settings
from tonewatch.perf.ceiling import triton_ceiling
from tonewatch.perf.trivial import start_trivial_triton
from tonewatch.perf.workload import bench_messages
from tonewatch.stack import worker_env
from tonewatch.stack.kafka import start_kafka, stop_kafka
from tonewatch.stack.procs import free_port, spawn, stop
from tonewatch.stack.triton import start_triton, stop_triton

REPO = Path(__file__).resolve().parents[1]


def _medians(runs: dict[str, list[float]]) -> dict[str, float]:
    return {k: round(statistics.median(v), 1) for k, v in runs.items()}


def workers(runs: int, messages: int, base: Settings, tmp: Path) -> dict[str, list[float]]:
    kafka = start_kafka(base, tmp / "kafka")
    try:
        triton, local = start_trivial_triton(base.updated(kafka__bootstrap=kafka.bootstrap), tmp / "triton")
        try:
            return _alternate(runs, ("1", "2"), lambda n: _drain(local, messages, int(n), tmp))
        finally:
            stop_triton(triton)
    finally:
        stop_kafka(kafka)


def _drain(local: Settings, messages: int, count: int, tmp: Path) -> float:
    pids: list[int] = []

    def start(s: Settings) -> None:
        for i in range(count):
            env = worker_env(s.updated(scoring__metrics_port=free_port()))
            log = tmp / "logs" / f"{uuid.uuid4().hex}-{i}.log"
            pids.append(spawn([sys.executable, "-m", "tonewatch", "worker"], log, env=env))

    settings = local.updated(kafka__topic_prefix=f"scale-{uuid.uuid4().hex[:6]}")
    try:
        return float(drain(settings, messages, start)["drain_msgs_per_s"])
    finally:
        for pid in pids:
            stop(pid, timeout_s=30)


def triton(runs: int, seconds: float, base: Settings, tmp: Path) -> dict[str, list[float]]:
    models = (base.triton.sentiment_model, base.triton.topic_model)
    texts = [m["text"] for m in bench_messages(2000)]

    def ceiling(instances: str) -> float:
        # the local stack's one thread per model instance (tonewatch/stack), one or two instances of each model
        settings = base.updated(triton__cpu_threads=1, triton__cpu_instances=int(instances))
        proc = start_triton(settings, tmp / f"triton-{instances}-{uuid.uuid4().hex[:6]}")
        try:
            live = settings.updated(triton__http_url=proc.http_url, triton__grpc_url=proc.grpc_url)
            for model in models:
                load_model(live, model)
            rate, _ = triton_ceiling(proc.grpc_url, models, texts, batch=base.scoring.batch_size, concurrency=4,
                                     duration_s=seconds)
            return rate
        finally:
            stop_triton(proc)

    return _alternate(runs, ("1", "2"), ceiling)


def _alternate(runs: int, arms: tuple[str, str], measure: Callable[[str], float]) -> dict[str, list[float]]:
    """Each arm --runs times, the order swapped every run, so a machine that warms up or gets busier favours neither."""
    out: dict[str, list[float]] = {arm: [] for arm in arms}
    for run in range(runs):
        for arm in arms if run % 2 == 0 else arms[::-1]:
            out[arm].append(measure(arm))
            print(json.dumps({"run": run + 1, "arm": arm, "msgs_per_s": round(out[arm][-1], 1)}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("workers", "triton"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=50_000, help="workers: the backlog per run")
    parser.add_argument("--seconds", type=float, default=20.0, help="triton: measured seconds per run")
    args = parser.parse_args()
    base = Settings().updated(run_dir=REPO / ".tonewatch", triton__model_repository=REPO / "triton_repo",
                              triton__model_env_path=Path(sys.prefix))
    with tempfile.TemporaryDirectory(prefix="tonewatch-scale-") as tmp:
        if args.what == "workers":
            runs = workers(args.runs, args.messages, base, Path(tmp))
        else:
            runs = triton(args.runs, args.seconds, base, Path(tmp))
    key = "workers" if args.what == "workers" else "instances"
    print(json.dumps({"what": args.what, f"median_msgs_per_s_by_{key}": _medians(runs)}))


if __name__ == "__main__":
    main()
