"""Upgrading from a version whose score agent read the inputs in the Faust app's own consumer group:
the score stage starts where that group left off instead of re-reading the whole input history."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from tests.integration.conftest import Worker, wait_for
from tonewatch.core.kafka_io import client_config, ensure_topics, producer, read_json
from tonewatch.core.settings import Settings
from tonewatch.stack.procs import free_port

pytestmark = pytest.mark.integration


def _send(s: Settings, ids: list[str]) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    prod = producer(s.kafka)
    for i in ids:
        prod.send(s.kafka.topic("news"), key=i.encode(), value=json.dumps(
            {"id": i, "source": "news", "ts": now, "text": f"Guidance cut at {i}"}).encode())
    prod.flush()
    prod.close()


def test_score_stage_resumes_from_the_faust_groups_input_offsets(stack_settings: Settings, tmp_path: Path) -> None:
    s = stack_settings.updated(kafka__topic_prefix=f"up{uuid.uuid4().hex[:8]}", scoring__metrics_port=free_port())
    ensure_topics(s.kafka, [s.kafka.topic("news"), s.kafka.topic("chat")])
    old = [f"old-{i}" for i in range(40)]
    _send(s, old)  # scored by the previous version, which committed them in the Faust group
    consumer = KafkaConsumer(**client_config(s.kafka), group_id=s.kafka.group_id, enable_auto_commit=False)
    tps = [TopicPartition(s.kafka.topic("news"), p) for p in consumer.partitions_for_topic(s.kafka.topic("news")) or ()]
    ends = consumer.end_offsets(tps)
    consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in tps})
    consumer.close()
    new = [f"new-{i}" for i in range(10)]
    _send(s, new)
    worker = Worker(s, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        wait_for(s, "scored", len(new), worker, timeout_s=180)
        scored = {r["id"] for r in read_json(s.kafka, s.kafka.topic("scored"))}
        assert scored == set(new), sorted(scored - set(new))[:5]
        assert "starts where the Faust group" in worker.log_path.read_text()
    finally:
        worker.stop()
