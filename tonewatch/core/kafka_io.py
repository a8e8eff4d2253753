"""Kafka connection settings for every client family, and the plain kafka-python clients of the CLI and tests."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer import KafkaConsumer
from kafka.errors import TopicAlreadyExistsError
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from tonewatch.core.sections import KafkaSettings


def sasl_config(kafka: KafkaSettings) -> dict[str, Any]:
    """SASL options in the spelling kafka-python and aiokafka share; the password is unwrapped only here."""
    if not kafka.sasl_mechanism:
        return {}
    conf: dict[str, Any] = {"sasl_mechanism": kafka.sasl_mechanism,
                            "sasl_plain_username": kafka.sasl_username}
    if kafka.sasl_password is not None:
        conf["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return conf


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The one TLS context of every client family (kafka-python, aiokafka, Faust): verified against
    ``kafka_ssl_cafile`` (or the system store), hostname checked, client certificate when set."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = kafka.ssl_cafile
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if kafka.ssl_certfile is not None:
        ctx.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile))
    return ctx


# the CLI's consumers never see the records of an aborted transaction (the score stage writes in transactions)
READER = {"enable_auto_commit": False, "isolation_level": "read_committed"}


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by every kafka-python client.

    With a client certificate, kafka-python speaks TLS 1.2 at most: it drops connections that receive a
    Java broker's TLS 1.3 post-handshake data (docs/decisions/2026-12-07-kafka-python-tls12.md).
    The worker's aiokafka clients keep TLS 1.3.
    """
    conf = {
        "bootstrap_servers": kafka.bootstrap.split(","),
        "security_protocol": kafka.security_protocol,
        **sasl_config(kafka),
    }
    if (ctx := ssl_context(kafka)) is not None:
        if kafka.ssl_certfile is not None:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        conf["ssl_context"] = ctx
    return conf


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The same connection settings in aiokafka's spelling (the worker's score stage and model-events follower)."""
    conf: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap,
                            "security_protocol": kafka.security_protocol}
    if (ctx := ssl_context(kafka)) is not None:
        conf["ssl_context"] = ctx
    return {**conf, **sasl_config(kafka)}


def ensure_topics(kafka: KafkaSettings, names: list[str]) -> None:
    """Create missing topics with the configured partition count and streams.topics' configs (idempotent)."""
    from tonewatch.core.topics import CONFIGS

    configs = {kafka.topic(short): conf for short, conf in CONFIGS.items()}
    admin = KafkaAdminClient(**client_config(kafka), client_id="tonewatch-admin")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, kafka.topic_partitions, 1, topic_configs=configs.get(n, {}))
               for n in names if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


def producer(kafka: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**client_config(kafka), acks="all", linger_ms=5, retries=5)


def iter_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    follow: bool = False,
    idle_timeout_s: float = 10.0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Any]:
    """Every record of a topic from the beginning; without ``follow``, stop once caught up.

    Reads without a consumer group, so tailing never disturbs the worker's offsets.
    """
    consumer = KafkaConsumer(**client_config(kafka), **READER, group_id=None)
    try:
        deadline = time.monotonic() + idle_timeout_s
        parts: set[int] | None = None
        while not parts:
            if topic in consumer.topics():  # refreshes cluster metadata
                parts = consumer.partitions_for_topic(topic)
            if not parts:
                if not follow and time.monotonic() > deadline:
                    return
                time.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        # track positions from what we read: position() can block on a fresh assignment
        nxt = consumer.beginning_offsets(tps)
        while True:
            if stop is not None and stop():
                return
            if not follow and all(nxt[tp] >= end[tp] for tp in tps):
                return
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    nxt[tp] = r.offset + 1
                    yield r
            # past what no record holds (transaction markers, aborted records): the position after a poll
            nxt.update({tp: max(nxt[tp], consumer.position(tp)) for tp in tps})
    finally:
        consumer.close()


def read_json(kafka: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    """All JSON values of a topic, up to its current end."""
    return [json.loads(r.value) for r in iter_topic(kafka, topic)]


def count_records(kafka: KafkaSettings, topic: str) -> int:
    """Committed records in a topic, read: end offsets would also count transaction markers."""
    return sum(1 for _ in iter_topic(kafka, topic))


def offsets_consumer(kafka: KafkaSettings) -> KafkaConsumer:
    """A group-less consumer for offset lookups; keep one for repeated :func:`end_offsets_total` calls."""
    return KafkaConsumer(**client_config(kafka), **READER, group_id=None)


def end_offsets_total(consumer: KafkaConsumer, topic: str) -> int:
    """Records ever written to a topic (sum of end offsets), through an existing consumer."""
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum(consumer.end_offsets(tps).values()) if tps else 0


def topic_size(kafka: KafkaSettings, topic: str) -> int:
    """Records ever written to a topic (sum of end offsets): the worker's output counters."""
    consumer = offsets_consumer(kafka)
    try:
        return end_offsets_total(consumer, topic)
    finally:
        consumer.close()


def group_lag(kafka: KafkaSettings, topic: str, group: str | None = None) -> int:
    """How far the worker's consumer group is behind on a topic (0 = caught up)."""
    conf = client_config(kafka)
    admin = KafkaAdminClient(**conf)
    consumer = KafkaConsumer(**conf, **READER, group_id=None)
    try:
        if group is None:  # the input topics belong to the score stage's group
            from tonewatch.core.topics import INPUTS

            group = kafka.score_group_id if topic in {kafka.topic(t) for t in INPUTS} else kafka.group_id
        committed = admin.list_consumer_group_offsets(group)
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = consumer.end_offsets(tps) if tps else {}
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        consumer.close()
        admin.close()
