"""A message id the worker already scored is counted as a duplicate, not scored again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Worker, wait_for
from tonewatch.core.kafka_io import read_json
from tonewatch.replay import replay

pytestmark = pytest.mark.integration


def _line(i: str, text: str) -> str:
    return json.dumps({"id": i, "source": "news", "ts": "2026-01-05T14:00:00Z", "text": text})


def test_redelivered_ids_are_scored_once(pipeline: Callable[..., Worker], tmp_path: Path) -> None:
    worker = pipeline()
    s = worker.settings
    first = tmp_path / "first.jsonl"
    # the same id twice in one batch, then again in a later batch
    first.write_text("\n".join([_line("d1", "Oil prices slump"), _line("d1", "Oil prices slump"),
                                _line("d2", "Bank raises dividend")]) + "\n")
    replay(s, first)
    wait_for(s, "scored", 2, worker)
    again = tmp_path / "again.jsonl"
    again.write_text(_line("d1", "Oil prices slump") + "\n")
    replay(s, again)
    deadline = time.monotonic() + 60
    while worker.metrics().get("tonewatch_duplicates_total{}", 0) < 2:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    assert sorted(r["id"] for r in read_json(s.kafka, s.kafka.topic("scored"))) == ["d1", "d2"]
    assert worker.metrics()["tonewatch_duplicates_total{}"] == 2
