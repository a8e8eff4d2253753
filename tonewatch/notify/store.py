"""Writes and reads of the compacted subscriptions and acks topics, for the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from kafka.errors import KafkaError

from tonewatch.core.kafka_io import iter_topic, producer
from tonewatch.core.settings import Settings
from tonewatch.notify.ledger import ensure_delivery_topics
from tonewatch.notify.state import State
from tonewatch.notify.subscriptions import Subscription


def _put(settings: Settings, topic: str, key: str, value: dict[str, Any] | None) -> None:
    ensure_delivery_topics(settings)
    p = producer(settings.kafka)
    try:
        body = json.dumps(value).encode() if value is not None else None
        for attempt in range(5):  # a just-created topic may not have a partition leader yet
            try:
                p.send(settings.kafka.topic(topic), key=key.encode(), value=body).get(timeout=30)
                return
            except KafkaError as exc:
                if attempt == 4 or not exc.retriable:
                    raise
                time.sleep(1.0)
    finally:
        p.close()


def fold_subscriptions(records: Iterable[Any]) -> dict[str, Subscription]:
    """The current subscriptions from the topic's records (``partition``, ``offset``, ``key``, ``value``), folded
    as the notifier folds them: one it cannot read (a key not UTF-8, a value not JSON) is logged and skipped."""
    state = State()
    for r in records:
        state.apply("subscriptions", r.partition, r.offset, r.key, r.value)
    return state.subs


def list_subscriptions(settings: Settings) -> dict[str, Subscription]:
    return fold_subscriptions(iter_topic(settings.kafka, settings.kafka.topic("subscriptions"), idle_timeout_s=3.0))


def save_subscription(settings: Settings, sub: Subscription) -> None:
    _put(settings, "subscriptions", sub.id, sub.model_dump(exclude_none=True))


def remove_subscription(settings: Settings, sub_id: str) -> bool:
    """Tombstone the id; False when no such subscription exists."""
    if sub_id not in list_subscriptions(settings):
        return False
    _put(settings, "subscriptions", sub_id, None)
    return True


def ack_record(alert_id: str, by: str | None, note: str | None) -> dict[str, Any]:
    """The ack record: ``tonewatch alerts ack`` and the console's ack both build it here."""
    return {"alert_id": alert_id, "by": by, "note": note, "at": time.time()}


def publish_ack(settings: Settings, doc: dict[str, Any]) -> None:
    """Write an ack record, keyed by its alert id (the acks topic is compacted)."""
    _put(settings, "acks", str(doc["alert_id"]), doc)


def acknowledge(settings: Settings, alert_id: str, by: str | None, note: str | None) -> dict[str, Any]:
    """Record an ack (keyed by alert id); the notifier stops escalating that alert."""
    doc = ack_record(alert_id, by, note)
    publish_ack(settings, doc)
    return doc
