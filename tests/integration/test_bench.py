"""``tonewatch bench``'s measurements against the real worker, Kafka and Triton (small counts: figures, not speed)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Worker
from tonewatch.bench import drain, measure
from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings
from tonewatch.stack.procs import free_port

pytestmark = pytest.mark.integration


def test_live_measurement_times_every_message_through_the_running_worker(
    pipeline: Callable[..., Worker],
) -> None:
    worker = pipeline()
    result = measure(worker.settings, 150, timeout_s=300)
    assert result["messages"] == 150
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert 0 < result["e2e_msgs_per_s"] <= result["produce_msgs_per_s"]
    assert result["scoring_msgs_per_s"] >= result["e2e_msgs_per_s"]  # first->last scored is inside produce->last
    ids = {r["id"] for r in read_json(worker.settings.kafka, worker.settings.kafka.topic("scored"))}
    assert len({i for i in ids if "warmup" not in i}) == 150 and len(ids) == 151
    again = measure(worker.settings, 20, timeout_s=300)  # same topics, same worker: new ids, all scored again
    assert again["messages"] == 20
    assert len({r["id"] for r in read_json(worker.settings.kafka, worker.settings.kafka.topic("scored"))}) == 151 + 21


def test_drain_starts_the_worker_only_after_the_backlog_is_written(stack_settings: Settings, tmp_path: Path) -> None:
    settings = stack_settings.updated(kafka__topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                                                 scoring__metrics_port=free_port())
    workers: list[Worker] = []
    backlog: list[int] = []

    def start(s: Settings) -> int:
        from tonewatch.core.kafka_io import topic_size

        backlog.append(topic_size(s.kafka, s.kafka.topic("news")))  # what is waiting when the worker starts
        workers.append(Worker(s, tmp_path / "worker.log"))
        return workers[-1].proc.pid

    try:
        result = drain(settings, 200, start, timeout_s=300)
    finally:
        for w in workers:
            w.stop()
    assert backlog == [200] and len(workers) == 1
    assert result["messages"] == 200 and result["drain_msgs_per_s"] > 0
    assert result["start_to_through_trends_s"] > 0
    scored = read_json(settings.kafka, settings.kafka.topic("scored"))
    assert len({r["id"] for r in scored}) == len(scored) == 200
