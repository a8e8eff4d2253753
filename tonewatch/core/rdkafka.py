"""A librdkafka consumer (confluent-kafka) behind the few kafka-python calls the history-store sink makes.

kafka-python decodes record batches in Python, under the GIL: that was 40% of the sink's time, and the sink could
not keep up with one worker. librdkafka fetches and decodes on threads of its own. The sink keeps kafka-python's
vocabulary (``TopicPartition``, ``KafkaError``); this module is the one place that translates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException
from confluent_kafka import TopicPartition as RdPartition
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from tonewatch.core.sections import KafkaSettings

log = logging.getLogger(__name__)


class Record(NamedTuple):
    """The fields of a kafka-python ``ConsumerRecord`` that readers of this consumer use."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def rd_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings in librdkafka's spelling. The broker's host name is checked; without
    ``kafka_ssl_cafile`` the system's CA store is used, as the other client families do."""
    conf: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap, "security.protocol": kafka.security_protocol}
    if kafka.sasl_mechanism:
        conf.update({"sasl.mechanism": kafka.sasl_mechanism, "sasl.username": kafka.sasl_username})
        if kafka.sasl_password is not None:
            conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = str(kafka.ssl_cafile) if kafka.ssl_cafile else "probe"
        conf["ssl.endpoint.identification.algorithm"] = "https"  # librdkafka's default; stated, as it is the point
        if kafka.ssl_certfile is not None:
            conf["ssl.certificate.location"] = str(kafka.ssl_certfile)
            conf["ssl.key.location"] = str(kafka.ssl_keyfile)
    return conf


def committing_consumer(kafka: KafkaSettings, topics: list[str], group_id: str, **extra: Any) -> RdConsumer:
    """A group member that reads committed records only and commits nothing itself: its owner commits offsets
    once what it read is durable. ``extra`` is librdkafka configuration."""
    conf = {**rd_config(kafka), "group.id": group_id, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest", "session.timeout.ms": int(kafka.session_timeout_s * 1000),
            "error_cb": _log_error, "logger": log, **extra}  # librdkafka's own log through Python's, not stderr
    consumer = Consumer(conf)
    consumer.subscribe(topics)
    return RdConsumer(consumer)


def _log_error(err: Any) -> None:
    """librdkafka retries on its own (a broker down, a connection lost); it reports here what it is retrying."""
    log.warning("kafka: %s", err)


class RdConsumer:
    """kafka-python's ``poll``, ``commit``, ``position``, ``highwater``, ``assignment`` and ``close``, as the sink
    and its :class:`~tonewatch.store.offsets.Committer` call them. librdkafka's errors are raised as
    ``KafkaError``."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list[Record]]:
        """Like kafka-python's: back as soon as records are there (up to ``max_records``), else at the timeout."""
        first = self.consumer.poll(timeout_ms / 1000)
        if first is None:
            return {}
        messages = [first, *self.consumer.consume(num_messages=max_records - 1, timeout=0)] if max_records > 1 \
            else [first]
        out: dict[tuple[str, int], list[Record]] = {}
        for m in messages:
            if (err := m.error()) is not None:
                self._failed(err)
                continue
            topic, partition = m.topic(), m.partition()
            out.setdefault((topic, partition), []).append(Record(topic, partition, m.offset(), m.key(), m.value()))
        return {TopicPartition(*tp): records for tp, records in out.items()}

    def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        """Synchronously; ``offsets`` maps to kafka-python's ``OffsetAndMetadata`` (its ``offset`` is used)."""
        parts = [RdPartition(tp.topic, tp.partition, om.offset) for tp, om in offsets.items()]
        try:
            self.consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            raise KafkaError(str(exc)) from exc

    def position(self, tp: TopicPartition, timeout_ms: int = 0) -> int | None:
        """The next offset to be read, or ``None`` while unknown (not yet fetched, or not assigned)."""
        try:
            [part] = self.consumer.position([RdPartition(tp.topic, tp.partition)])
        except KafkaException as exc:
            raise KafkaError(str(exc)) from exc
        offset: int = part.offset
        return None if offset < 0 else offset

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end as last fetched, or ``None`` while unknown."""
        try:
            ends = self.consumer.get_watermark_offsets(RdPartition(tp.topic, tp.partition), cached=True)
        except KafkaException as exc:
            raise KafkaError(str(exc)) from exc
        if ends is None or ends[1] == OFFSET_INVALID or ends[1] < 0:
            return None
        high: int = ends[1]
        return high

    def assignment(self) -> set[TopicPartition]:
        try:
            return {TopicPartition(p.topic, p.partition) for p in self.consumer.assignment()}
        except KafkaException as exc:
            raise KafkaError(str(exc)) from exc

    def close(self) -> None:
        self.consumer.close()

    def _failed(self, err: Any) -> None:
        """A fatal error ends the consumer; any other is librdkafka's to retry, and only logged."""
        if err.fatal():
            raise KafkaError(str(err))
        log.warning("kafka consumer: %s", err)
