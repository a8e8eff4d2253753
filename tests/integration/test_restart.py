"""A worker stopped mid-stream and replaced resumes its windows from the table's changelog."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Worker, wait_for, wait_watermark
from tests.integration.test_pipeline import assert_trends_match_offline, last_event_time
from tonewatch.core.kafka_io import group_lag, read_json
from tonewatch.replay import replay

pytestmark = pytest.mark.integration

SPLIT = "2026-01-05T14:20:30"  # inside a window: that window must survive the restart half-counted


def _drain(worker: Worker) -> None:
    s = worker.settings
    deadline = time.monotonic() + 180
    while sum(group_lag(s.kafka, s.kafka.topic(t)) for t in ("news", "chat", "trend-events")) > 0:
        assert time.monotonic() < deadline and worker.alive(), worker.log_tail()
        time.sleep(1.0)


def test_restarted_worker_resumes_windows_from_the_changelog(pipeline: Callable[..., Worker], tmp_path: Path) -> None:
    lines = [ln for ln in (REPO / "data" / "sample_feed.jsonl").read_text().splitlines() if '"ts": "' in ln]
    valid = [ln for ln in lines if "bad-" not in ln]
    first = [ln for ln in valid if json.loads(ln)["ts"] < SPLIT]
    second = [ln for ln in valid if json.loads(ln)["ts"] >= SPLIT]
    (tmp_path / "a.jsonl").write_text("\n".join(first) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(second) + "\n")

    a = pipeline()
    s = a.settings
    replay(s, tmp_path / "a.jsonl", speed=120)
    wait_for(s, "scored", len(first), a, timeout_s=300)
    _drain(a)
    a.stop()  # SIGTERM: in-flight work finishes, offsets are committed

    b = pipeline(kafka__topic_prefix=s.kafka.topic_prefix)
    replay(s, tmp_path / "b.jsonl", speed=120)
    scored = wait_for(s, "scored", len(valid), b, timeout_s=300)
    _drain(b)
    assert sorted(r["id"] for r in scored) == sorted(json.loads(ln)["id"] for ln in valid)  # none lost, none twice
    wait_watermark([b], last_event_time(s))
    assert_trends_match_offline(s, lateness_s=s.detector.allowed_lateness_s)
    alerts = read_json(s.kafka, s.kafka.topic("alerts"))
    firing = [x for x in alerts if x["status"] == "firing" and x["dimension"] == "ticker"]
    assert [x["key"] for x in firing] == ["TSLA"]
