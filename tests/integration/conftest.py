"""Real Kafka and real Triton, started once per test session; a worker per test, unique topics."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.leaks import processes_naming
from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings
from tonewatch.notify.egress import LOOPBACK
from tonewatch.stack import worker_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Triton, broker, database or worker left running holds ports and cores after CI's run: each fails the
    session (and is killed)."""
    yield
    root = tmp_path_factory.getbasetemp()
    deadline = time.monotonic() + 15  # a stop that signalled and did not wait
    while (left := processes_naming(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "still running after the tests: " + "; ".join(f"{pid}: {cmd[:200]}" for pid, cmd in left)


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kafka + Triton serving the repo's models; bootstraps models v1 once if they are missing."""
    from models.bootstrap import ensure_models
    from models.triton_admin import load_model
    from tonewatch.stack.kafka import ensure_kafka_jars, start_kafka, stop_kafka
    from tonewatch.stack.triton import start_triton, stop_triton

    run_dir = tmp_path_factory.mktemp("stack")
    base = Settings().updated(run_dir=REPO / ".tonewatch", triton__model_repository=REPO / "triton_repo",
                              triton__model_env_path=Path(sys.prefix),
                              delivery__allowed_networks=LOOPBACK)  # tests' webhook sinks are on 127.0.0.1
    ensure_kafka_jars(base)  # cached in the repo's run dir across sessions
    ensure_models(base)
    kafka = start_kafka(base, run_dir / "kafka")
    triton = None
    try:
        triton = start_triton(base, run_dir / "triton")
        settings = base.updated(
            kafka__bootstrap=kafka.bootstrap, triton__grpc_url=triton.grpc_url,
            triton__http_url=triton.http_url, triton__metrics_url=triton.metrics_url, run_dir=run_dir,
        )
        for name in (settings.triton.sentiment_model, settings.triton.topic_model):
            load_model(settings, name)
        yield settings
    finally:
        if triton is not None:
            stop_triton(triton)
        stop_kafka(kafka)


class Worker:
    """A ``tonewatch worker`` subprocess: the same entry point production runs."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        env = worker_env(settings)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tonewatch", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples, by ``name{labels}``."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://{self.settings.metrics_host}:{self.settings.scoring.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until the worker has joined its group and recovered its tables.

        Faust can deliver records that arrive during start-up twice (it fetches, then seeks the
        stream partitions to the committed offsets once recovery ends): at-least-once, as Kafka
        promises; dedup by message id is still to come. Tests that count exactly wait for this.
        """
        deadline = time.monotonic() + timeout_s
        while "Worker ready" not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or not self.alive():
                pytest.fail(f"worker not ready:\n{self.log_tail()}")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        """kill -9: nothing is delivered, committed or closed."""
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def pipeline(stack_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: settings with a unique topic prefix, and a running worker on them."""
    workers: list[Worker] = []

    def start(**overrides: Any) -> Worker:
        prefix = overrides.pop("kafka__topic_prefix", f"t{uuid.uuid4().hex[:10]}")
        from tonewatch.stack.procs import free_port

        settings = stack_settings.updated(kafka__topic_prefix=prefix, scoring__metrics_port=free_port(), **overrides)
        w = Worker(settings, tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        w.wait_ready()
        return w

    yield start
    for w in workers:
        w.stop()


def wait_for(
    settings: Settings, topic: str, count: int, worker: Worker, timeout_s: float = 240.0
) -> list[dict[str, Any]]:
    """Records of a topic once it holds at least ``count``; fails with the worker's log otherwise."""
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = read_json(settings.kafka, settings.kafka.topic(topic))
        if len(records) >= count:
            return records
        if not worker.alive():
            pytest.fail(f"worker died:\n{worker.log_tail()}")
        time.sleep(1.0)
    pytest.fail(f"{topic}: {len(records)}/{count} records after {timeout_s}s\n{worker.log_tail()}")


def wait_watermark(workers: list[Worker], ts: float, timeout_s: float = 120.0) -> None:
    """Until every trend-events partition's watermark has reached event time ``ts`` (after a feed ends, its
    partitions turn idle and the watermark becomes the latest event time read): the windows are closed."""
    deadline = time.monotonic() + timeout_s
    partitions = workers[0].settings.kafka.topic_partitions
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = {}
        for w in workers:
            if w.alive():
                with contextlib.suppress(OSError):
                    seen.update({k: v for k, v in w.metrics().items() if k.startswith("tonewatch_watermark_seconds")})
        if len(seen) >= partitions and min(seen.values()) >= ts:
            return
        time.sleep(1.0)
    pytest.fail(f"watermarks {seen} have not reached {ts} after {timeout_s}s\n{workers[0].log_tail()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright, for the console's browser tests: no browser download, and no
    sandbox (the tests run as root). Imported here, not at the top: most integration tests need no browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        found = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield found
        found.close()
