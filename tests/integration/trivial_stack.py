"""Kafka and a Triton serving benchmarks/trivial_repo for one test module: loads in seconds, scores next to free."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.conftest import REPO
from tonewatch.core.settings import Settings
from tonewatch.perf.trivial import start_trivial_triton
from tonewatch.stack.kafka import KafkaProcess, start_kafka, stop_kafka
from tonewatch.stack.triton import TritonProcess, stop_triton


@contextmanager
def kafka_and_trivial_triton(run_dir: Path) -> Iterator[tuple[KafkaProcess, TritonProcess, Settings]]:
    """Both started under ``run_dir``, the settings pointing at the Triton; both stopped after, also on a failure."""
    base = Settings().updated(run_dir=REPO / ".tonewatch")
    kafka = start_kafka(base, run_dir / "kafka")
    try:
        triton, settings = start_trivial_triton(base, run_dir / "triton")
    except BaseException:
        stop_kafka(kafka)
        raise
    try:
        yield kafka, triton, settings
    finally:
        stop_triton(triton)
        stop_kafka(kafka)
