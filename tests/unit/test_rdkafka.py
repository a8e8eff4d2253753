"""The librdkafka consumer behind kafka-python's calls (tonewatch/core/rdkafka.py), with a fake confluent one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaException
from confluent_kafka import KafkaError as RdError
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import SecretStr

from tonewatch.core.rdkafka import RdConsumer, Record, rd_config
from tonewatch.core.settings import Settings


class Message:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None = b"{}",
                 error: RdError | None = None) -> None:
        self._t, self._p, self._o, self._v, self._e = topic, partition, offset, value, error

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._v

    def error(self) -> RdError | None:
        return self._e


class FakeConsumer:
    def __init__(self, queued: list[Message], fail: bool = False) -> None:
        self.queued, self.fail = queued, fail
        self.timeouts: list[float] = []
        self.committed: list[Any] = []

    def poll(self, timeout: float) -> Message | None:
        self.timeouts.append(timeout)
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        assert timeout == 0
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        if self.fail:
            raise KafkaException(RdError(RdError._NO_OFFSET))
        self.committed.append([(p.topic, p.partition, p.offset) for p in offsets])

    def position(self, parts: list[Any]) -> list[Any]:
        parts[0].offset = 7 if parts[0].partition == 0 else OFFSET_INVALID
        return parts

    def get_watermark_offsets(self, part: Any, cached: bool) -> tuple[int, int] | None:
        return {0: (0, 12), 1: (OFFSET_INVALID, OFFSET_INVALID)}.get(part.partition)


def test_a_poll_returns_what_is_queued_by_partition_up_to_max_records() -> None:
    queued = [Message("a", 0, 5), Message("b", 1, 9), Message("a", 0, 6), Message("a", 0, 7)]
    fake = FakeConsumer(queued)
    polled = RdConsumer(fake).poll(timeout_ms=250, max_records=3)
    assert polled == {TopicPartition("a", 0): [Record("a", 0, 5, b"k", b"{}"), Record("a", 0, 6, b"k", b"{}")],
                      TopicPartition("b", 1): [Record("b", 1, 9, b"k", b"{}")]}
    assert fake.timeouts == [0.25] and len(fake.queued) == 1  # waits for the first only, then takes what is there


def test_an_empty_poll_and_a_poll_of_one() -> None:
    assert RdConsumer(FakeConsumer([])).poll(timeout_ms=10) == {}
    fake = FakeConsumer([Message("a", 0, 1), Message("a", 0, 2)])
    assert RdConsumer(fake).poll(max_records=1) == {TopicPartition("a", 0): [Record("a", 0, 1, b"k", b"{}")]}


def test_a_passing_error_is_skipped_and_a_fatal_one_raises() -> None:
    passing = Message("a", 0, -1, None, RdError(RdError._TRANSPORT))
    polled = RdConsumer(FakeConsumer([passing, Message("a", 0, 3)])).poll(max_records=5)
    assert [r.offset for r in polled[TopicPartition("a", 0)]] == [3]
    fatal = Message("a", 0, -1, None, RdError(RdError._FATAL, fatal=True))
    with pytest.raises(KafkaError):
        RdConsumer(FakeConsumer([fatal])).poll()


def test_commit_position_and_highwater_speak_kafka_python() -> None:
    fake = FakeConsumer([])
    consumer = RdConsumer(fake)
    consumer.commit({TopicPartition("a", 0): OffsetAndMetadata(8, "", -1)})
    assert fake.committed == [[("a", 0, 8)]]
    assert consumer.position(TopicPartition("a", 0), timeout_ms=0) == 7
    assert consumer.position(TopicPartition("a", 1)) is None  # not fetched yet
    assert consumer.highwater(TopicPartition("a", 0)) == 12
    assert consumer.highwater(TopicPartition("a", 1)) is None and consumer.highwater(TopicPartition("a", 2)) is None


def test_a_refused_commit_is_a_kafka_error() -> None:
    with pytest.raises(KafkaError):  # the sink's Committer logs it and reads the batch again
        RdConsumer(FakeConsumer([], fail=True)).commit({TopicPartition("a", 0): OffsetAndMetadata(1, "", -1)})


def test_rd_config_plaintext_sasl_and_tls() -> None:
    assert rd_config(Settings().kafka) == {"bootstrap.servers": Settings().kafka.bootstrap,
                                           "security.protocol": "PLAINTEXT"}
    kafka = Settings().updated(kafka__security_protocol="SASL_SSL", kafka__sasl_mechanism="SCRAM-SHA-512",
                               kafka__sasl_username="sink", kafka__sasl_password=SecretStr("pw"),
                               kafka__ssl_cafile=Path("/ca.pem"), kafka__ssl_certfile=Path("/c.pem"),
                               kafka__ssl_keyfile=Path("/k.pem")).kafka
    conf = rd_config(kafka)
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512" and conf["sasl.username"] == "sink"
    assert conf["sasl.password"] == "pw" and conf["ssl.ca.location"] == "/ca.pem"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert conf["ssl.certificate.location"] == "/c.pem" and conf["ssl.key.location"] == "/k.pem"
    system = rd_config(Settings().updated(kafka__security_protocol="SSL").kafka)
    assert system["ssl.ca.location"] == "probe" and "ssl.certificate.location" not in system


def test_librdkafkas_own_log_goes_through_pythons_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Not to stderr, where the sink's log format and level would not apply. No broker listens on port 9."""
    from tonewatch.core.rdkafka import committing_consumer

    caplog.set_level(logging.INFO, logger="tonewatch.core.rdkafka")
    consumer = committing_consumer(Settings().updated(kafka__bootstrap="127.0.0.1:9").kafka, ["t"], "g")
    try:
        for _ in range(10):
            consumer.poll(timeout_ms=300)  # librdkafka's log is handed over while polling
            if any(r.getMessage().startswith("FAIL") for r in caplog.records):
                break
    finally:
        consumer.close()
    assert any(r.getMessage().startswith("FAIL") and "127.0.0.1:9" in r.getMessage() for r in caplog.records)
