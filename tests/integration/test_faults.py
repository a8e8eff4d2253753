"""Faults on real processes (issue #8): kill -9 workers, stop Triton, restart Kafka; PII never leaks.

The module starts its OWN Kafka and a Triton serving the trivial models (benchmarks/trivial_repo),
so it may kill them without touching the session stack, and restarts take seconds. After each
fault: every acknowledged input id is scored (after a kill -9, exactly once), an alert record repeated
carries the same id and status, and the lag drains.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.integration.conftest import Worker
from tests.integration.trivial_stack import kafka_and_trivial_triton
from tonewatch.core.kafka_io import count_records, group_lag, producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.perf.trivial import ports_of, start_trivial_triton
from tonewatch.stack.kafka import KafkaProcess, start_kafka, stop_kafka
from tonewatch.stack.procs import free_port
from tonewatch.stack.triton import TritonProcess, stop_triton

pytestmark = pytest.mark.integration

CALM = ["Markets steady before the Fed", "Bond yields edge higher", "Oil holds near its recent range"]
SURGE = "Tesla falls after recall and a fraud lawsuit"
PII = ["jane.doe@example.com", "+1 415 555 0134", "(212) 555-0199", "123456789012", "@trader_joe"]
RATE = 20.0  # msg/s: well under what a worker scores on a loaded 2-core machine, so backlogs drain
STEP_S = 4 / RATE  # event time runs 4x faster than the wall clock: windows close while the test runs


@dataclass
class Stack:
    settings: Settings
    kafka: KafkaProcess
    triton: TritonProcess


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("faults")
    with kafka_and_trivial_triton(run_dir) as (kafka, triton, settings):
        stack = Stack(settings.updated(
            kafka__bootstrap=kafka.bootstrap, run_dir=run_dir, kafka__session_timeout_s=8.0,
            detector__window_s=10, detector__allowed_lateness_s=60, triton__timeout_s=5.0,
            # one partition: event time cannot skew across partitions of a lagging worker, so nothing is late
            # unless a redelivery makes it so (then it is a duplicate, dead-lettered as late and counted)
            kafka__topic_partitions=1,
        ), kafka, triton)
        try:
            yield stack
        finally:  # a test that restarted Kafka or Triton left the new process here; the ones above are stopped
            if stack.triton is not triton:
                stop_triton(stack.triton)
            if stack.kafka is not kafka:
                stop_kafka(stack.kafka)


class Feed(threading.Thread):
    """Produces ``rate`` msg/s until stopped; only ids the broker acknowledged count as inputs."""

    running: ClassVar[list[Feed]] = []

    def __init__(self, settings: Settings, rate: float = RATE, pii: bool = False) -> None:
        super().__init__(daemon=True)
        Feed.running.append(self)
        self.settings, self.rate, self.pii = settings, rate, pii
        self.acked: set[str] = set()
        self.failed = 0
        self._halt = threading.Event()
        cycle = 8 * settings.detector.window_s  # start on a cycle boundary: the first surge is 50 s of event time in
        self._t0 = (datetime.now(UTC).timestamp() - 3600) // cycle * cycle

    def message(self, i: int) -> dict[str, Any]:
        ts = self._t0 + i * STEP_S
        # two windows in eight turn negative: a surge must outlast one window to alert
        surge = int(ts // self.settings.detector.window_s) % 8 in (5, 6)
        text = SURGE if surge and i % 2 else f"{CALM[i % len(CALM)]} #{i}"
        if self.pii:
            text += f", call {PII[i % len(PII)]} or ping {PII[(i + 1) % len(PII)]}"
        return {"id": f"m-{i}", "source": "chat" if self.pii or i % 3 == 0 else "news", "text": text,
                "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
                "tickers": ["TSLA"] if i % 2 else []}

    def run(self) -> None:
        import json

        prod = producer(self.settings.kafka)
        i = 0
        start = time.monotonic()
        while not self._halt.is_set():
            m = self.message(i)
            fut = prod.send(self.settings.kafka.topic(m["source"]), key=m["id"].encode(), value=json.dumps(m).encode())
            fut.add_callback(lambda _md, mid=m["id"]: self.acked.add(mid))
            fut.add_errback(lambda _exc: setattr(self, "failed", self.failed + 1))
            i += 1
            time.sleep(max(0.0, start + i / self.rate - time.monotonic()))
        prod.flush(timeout=60)
        prod.close(timeout=10)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=90)
        if self in Feed.running:
            Feed.running.remove(self)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[Settings], Worker]]:
    """Factory of ready workers; every one (and every feed) is stopped at teardown, pass or fail."""
    workers: list[Worker] = []

    def start(settings: Settings) -> Worker:
        w = Worker(settings.updated(scoring__metrics_port=free_port()), tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        w.wait_ready(timeout_s=180)
        return w

    yield start
    for f in Feed.running:
        f.stop()
    for w in workers:
        w.stop()


def _scored_count(s: Settings) -> int:
    for _ in range(20):
        try:
            return count_records(s.kafka, s.kafka.topic("scored"))
        except Exception:  # kafka-python's offset lookup can fail while a restarted broker settles
            time.sleep(1.0)
    return count_records(s.kafka, s.kafka.topic("scored"))


def _drain_and_account(
    s: Settings, acked: set[str], worker: Worker, name: str, timeout_s: float = 240
) -> dict[str, Any]:
    """Wait for every acked id to be scored and the lag to reach 0; check alerts; print the figures."""
    deadline = time.monotonic() + timeout_s
    while True:
        scored = [r["id"] for r in read_json(s.kafka, s.kafka.topic("scored"))]
        lag = sum(group_lag(s.kafka, s.kafka.topic(t)) for t in ("news", "chat", "trend-events"))
        if (acked <= set(scored) and lag == 0) or time.monotonic() > deadline or not worker.alive():
            break
        time.sleep(2.0)
    dead = read_json(s.kafka, s.kafka.topic("dead-letter"))
    alerts = read_json(s.kafka, s.kafka.topic("alerts"))
    stages = Counter(d["stage"] for d in dead)
    pairs = Counter((a["id"], a["status"]) for a in alerts)
    figures = {"fault": name, "inputs": len(acked), "scored_records": len(scored),
               "scored_duplicates": len(scored) - len(set(scored)), "missing": len(acked - set(scored)),
               "dead_letter": dict(stages), "alerts": len(alerts), "alert_duplicates": sum(pairs.values()) - len(pairs),
               "lag": lag}
    if worker.alive():  # the last worker's repairs: re-read holes and skipped re-read trend records
        samples = worker.metrics()
        figures["offset_holes"] = {a: samples.get(f'tonewatch_offset_holes_total{{action="{a}"}}')
                                   for a in ("seek", "skip")}
        figures["trend_replays"] = samples.get("tonewatch_trend_replays_total{}")
    print(f"\nFAULT {figures}")
    assert worker.alive(), worker.log_tail()
    assert not acked - set(scored), f"{figures}\n{worker.log_tail()}"
    assert lag == 0, f"{figures}\n{worker.log_tail()}"
    assert stages["score"] == 0 and stages["validate"] == 0, figures
    episodes: dict[tuple[str, str, str, str], set[str]] = {}
    for a in alerts:  # one episode, one id: a repeated record never looks like a new alert
        episodes.setdefault((a["dimension"], a["key"], a["window"]["start"], a["status"]), set()).add(a["id"])
    assert all(len(ids) == 1 for ids in episodes.values()), episodes
    return figures


def _wait_progress(s: Settings, more: int, worker: Worker, timeout_s: float = 120) -> None:
    """Until ``more`` records beyond the current count are scored: the worker is mid-stream."""
    target = _scored_count(s) + more
    deadline = time.monotonic() + timeout_s
    while _scored_count(s) < target:
        assert time.monotonic() < deadline and worker.alive(), worker.log_tail()
        time.sleep(0.5)


def _fresh(stack: Stack) -> Settings:
    return stack.settings.updated(kafka__topic_prefix=f"f{uuid.uuid4().hex[:8]}")


def test_kill_9_worker_five_times(own_stack: Stack, spawn: Callable[[Settings], Worker]) -> None:
    s = _fresh(own_stack)
    worker = spawn(s)
    feed = Feed(s)
    feed.start()
    for _ in range(5):
        _wait_progress(s, 100, worker)
        os.kill(worker.proc.pid, signal.SIGKILL)  # no goodbye: its open transaction is aborted, read again
        worker.proc.wait()
        worker = spawn(s)
    _wait_progress(s, 100, worker)
    feed.stop()
    figures = _drain_and_account(s, feed.acked, worker, "kill -9 worker x5")
    assert figures["alerts"] > 0, figures
    assert figures["scored_duplicates"] == 0, figures  # exactly once: outputs and offsets in one transaction


def test_triton_down_30s(own_stack: Stack, spawn: Callable[[Settings], Worker], tmp_path: Path) -> None:
    s = _fresh(own_stack)
    worker = spawn(s)
    feed = Feed(s)
    feed.start()
    _wait_progress(s, 100, worker)
    ports = ports_of(own_stack.triton)
    stop_triton(own_stack.triton)
    time.sleep(30)  # inputs keep arriving: the lag grows, nothing is dead-lettered
    own_stack.triton, _ = start_trivial_triton(own_stack.settings, tmp_path / "triton", ports=ports)
    _wait_progress(s, 100, worker)
    feed.stop()
    figures = _drain_and_account(s, feed.acked, worker, "Triton down 30 s")
    assert figures["dead_letter"] == {}, figures


def test_kafka_broker_restart(own_stack: Stack, spawn: Callable[[Settings], Worker]) -> None:
    s = _fresh(own_stack)
    worker = spawn(s)
    feed = Feed(s)
    feed.start()
    _wait_progress(s, 100, worker)
    port = int(own_stack.kafka.bootstrap.rsplit(":", 1)[1])
    stop_kafka(own_stack.kafka)
    time.sleep(5)
    own_stack.kafka = start_kafka(own_stack.settings, own_stack.kafka.data_dir, port=port)
    _wait_progress(s, 100, worker, timeout_s=180)
    feed.stop()
    _drain_and_account(s, feed.acked, worker, "Kafka broker restart")
    print(f"sends the broker never acknowledged (not inputs): {feed.failed}")


def test_pii_masked_in_scored_alerts_and_log(own_stack: Stack, spawn: Callable[[Settings], Worker]) -> None:
    s = _fresh(own_stack).updated(detector__allowed_lateness_s=20, scoring__max_future_s=10)
    worker = spawn(s)
    feed = Feed(s, pii=True)
    feed.start()
    _wait_progress(s, 600, worker, timeout_s=180)  # past the first surge's windows and their lateness
    feed.stop()
    figures = _drain_and_account(s, feed.acked, worker, "PII")
    assert figures["alerts"] > 0, figures
    surfaces = {
        "scored": "\n".join(str(r) for r in read_json(s.kafka, s.kafka.topic("scored"))),
        "alerts": "\n".join(str(a) for a in read_json(s.kafka, s.kafka.topic("alerts"))),
        "log": worker.log_path.read_text(errors="replace"),
    }
    assert "<email>" in surfaces["scored"] and "@<user>" in surfaces["alerts"], figures
    for where, text in surfaces.items():
        leaked = [p for p in PII if p in text]
        assert not leaked, f"{where} leaks {leaked}"
