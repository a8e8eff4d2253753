"""A worker that starts mid-rollout routes its very first batch by the model events (issue #6)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from models.rollout import events
from tests.integration.conftest import Worker, wait_for
from tonewatch.core.kafka_io import ensure_topics, producer, read_json
from tonewatch.core.settings import Settings

pytestmark = pytest.mark.integration


def test_a_worker_started_during_a_shadow_routes_its_first_batch_by_it(
    stack_settings: Settings, pipeline: Callable[..., Worker]
) -> None:
    """The backlog waiting at start is the first batch: each record must already carry the shadow's try.

    v5 does not exist, so every shadow inference fails, and production's result is published with the
    failure noted in ``candidate``; a record without it was routed before the events were read.
    """
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = stack_settings.updated(kafka__topic_prefix=prefix)
    events.publish(settings, "sentiment", 1, "promoted", reason="test")
    events.publish(settings, "sentiment", 5, "shadow", reason="test")
    topic = settings.kafka.topic("news")
    ensure_topics(settings.kafka, [topic])
    prod = producer(settings.kafka)
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for i in range(30):
        msg = {"id": f"s-{i}", "source": "news", "text": f"Shares of ACME rise {i}% after earnings", "ts": ts}
        prod.send(topic, key=msg["id"].encode(), value=json.dumps(msg).encode())
    prod.flush()
    prod.close()

    worker = pipeline(kafka__topic_prefix=prefix)
    records = wait_for(settings, "scored", 30, worker)
    assert sorted(r["id"] for r in records) == sorted(f"s-{i}" for i in range(30))
    assert all(r["model_versions"]["sentiment"] == "1" for r in records)
    unrouted = [r["id"] for r in records if r.get("candidate", {}).get("sentiment", {}).get("version") != "5"]
    assert unrouted == [], f"routed before the model events were read: {unrouted}\n{worker.log_tail(40)}"
    assert all("error" in r["candidate"]["sentiment"] for r in records)
    assert read_json(settings.kafka, settings.kafka.topic("dead-letter")) == []
