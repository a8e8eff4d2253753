"""Topic names and the delivery ledger key: one key per (subscription, incident version, attempt kind)."""

from __future__ import annotations

import contextlib

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tonewatch.core.kafka_io import client_config, ensure_topics
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS

COMPACTED = ("subscriptions", "deliveries", "acks")
PLAIN = ("alerts", "delivery-dead-letter")


def ledger_key(subscription_id: str, item_id: str, stage: str, kind: str) -> str:
    """``stage`` is an incident's ``v<version>`` (an alert's status in ledgers written before incidents);
    ``kind`` is ``initial`` or ``escalation-N``."""
    return f"{subscription_id}|{item_id}|{stage}|{kind}"


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
    ensure_topics(settings.kafka, [settings.kafka.topic(INCIDENTS)])  # compacted, as core.topics.CONFIGS says
