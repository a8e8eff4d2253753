"""Topic names and the delivery ledger key: one key per (subscription, alert, status, attempt kind)."""

from __future__ import annotations

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tonewatch.core.kafka_io import client_config
from tonewatch.core.settings import Settings

COMPACTED = ("subscriptions", "deliveries", "acks")
PLAIN = ("alerts", "delivery-dead-letter")


def ledger_key(subscription_id: str, alert_id: str, status: str, kind: str) -> str:
    """``kind`` is ``initial`` or ``escalation-N``."""
    return f"{subscription_id}|{alert_id}|{status}|{kind}"


def ensure_delivery_topics(settings: Settings) -> None:
    """Compacted topics for state (latest value per key is all that matters), plain ones for events."""
    admin = KafkaAdminClient(**client_config(settings.kafka), client_id="tonewatch-notifier-admin")
    try:
        existing = set(admin.list_topics())
        compact = {"cleanup.policy": "compact"}
        new = [NewTopic(settings.kafka.topic(n), 1, 1, topic_configs=compact) for n in COMPACTED]
        new += [NewTopic(settings.kafka.topic(n), settings.kafka.topic_partitions, 1) for n in PLAIN]
        new = [t for t in new if t.name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
