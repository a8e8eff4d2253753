"""The open-loop bench against a real worker, Kafka and the trivial models: a tiny curve, its shape and order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Worker
from tests.integration.trivial_stack import kafka_and_trivial_triton
from tonewatch.core.settings import Settings
from tonewatch.perf.openloop import run_open_loop
from tonewatch.stack.procs import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trivial_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    run_dir = tmp_path_factory.mktemp("openloop")
    with kafka_and_trivial_triton(run_dir) as (kafka, _, settings):
        yield settings.updated(kafka__bootstrap=kafka.bootstrap, run_dir=run_dir)


def test_a_tiny_open_loop_curve_times_every_message_to_scored_and_to_its_trend_update(
    trivial_stack: Settings, tmp_path: Path
) -> None:
    settings = trivial_stack.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}", scoring__metrics_port=free_port())
    workers: list[Worker] = []

    def start(s: Settings) -> Worker:
        workers.append(Worker(s, tmp_path / "worker.log"))
        workers[-1].wait_ready()  # a fresh broker has no group coordinator until a group has joined
        return workers[-1]

    try:
        result = run_open_loop(settings, 200.0, start, fractions=(0.1, 0.5), step_s=3.0,
                               plot_path=tmp_path / "curve.png", timeout_s=120)
    finally:
        for w in workers:
            w.stop()
    steps = result["steps"]
    assert [s["offered_msgs_per_s"] for s in steps] == [20.0, 100.0] and len(workers) == 1
    for step in steps:
        assert step["messages"] == step["scored"] == step["trend"] == int(step["offered_msgs_per_s"] * 3)
        assert 0 < step["scored_p50_ms"] <= step["scored_p99_ms"] <= step["scored_p99_9_ms"]
        assert step["scored_p50_ms"] <= step["trend_p50_ms"] <= step["trend_p99_ms"] <= step["trend_p99_9_ms"]
        assert step["sent_msgs_per_s"] == pytest.approx(step["offered_msgs_per_s"], rel=0.05)  # it kept the schedule
    assert Path(result["plot"]).read_bytes()[:4] == b"\x89PNG"
