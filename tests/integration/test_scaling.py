"""Two workers share the partitions: each message is scored once, trends and alerts are as with one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import REPO, Worker, wait_for, wait_watermark
from tests.integration.test_pipeline import assert_trends_match_offline, last_event_time
from tonewatch.core.kafka_io import group_lag, read_json
from tonewatch.replay import replay

pytestmark = pytest.mark.integration


def test_two_workers_split_the_load_without_duplicates(pipeline: Callable[..., Worker]) -> None:
    a = pipeline()
    s = a.settings
    b = pipeline(kafka__topic_prefix=s.kafka.topic_prefix)
    time.sleep(5.0)  # both are in the group (the fixture waits for each) before any data flows

    lines = (REPO / "data" / "sample_feed.jsonl").read_text().splitlines()
    sent = replay(s, REPO / "data" / "sample_feed.jsonl", speed=120).sent
    scored = wait_for(s, "scored", sent - 3, a, timeout_s=300)
    deadline = time.monotonic() + 180
    while sum(group_lag(s.kafka, s.kafka.topic(t)) for t in ("news", "chat", "trend-events")) > 0:
        assert time.monotonic() < deadline and a.alive() and b.alive(), a.log_tail() + b.log_tail()
        time.sleep(1.0)

    valid_ids = []
    for line in lines:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "ts" in msg and msg.get("source") in ("news", "chat"):
            valid_ids.append(msg["id"])
    assert sorted(r["id"] for r in scored) == sorted(valid_ids)  # each exactly once
    per_worker = [sum(v for k, v in w.metrics().items() if k.startswith("tonewatch_messages_scored_total"))
                  for w in (a, b)]
    assert sum(per_worker) == len(valid_ids) and min(per_worker) > 0, per_worker
    wait_watermark([a, b], last_event_time(s))
    assert_trends_match_offline(s, lateness_s=s.detector.allowed_lateness_s)
    alerts = read_json(s.kafka, s.kafka.topic("alerts"))
    firing = [x for x in alerts if x["status"] == "firing" and x["dimension"] == "ticker"]
    assert [x["key"] for x in firing] == ["TSLA"]
