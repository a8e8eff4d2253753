"""The sink's offset commits: at the consumer's position, which is past the transaction markers that end what
the worker writes in transactions. A commit at the last record's offset + 1 would stop one short of each marker,
so a caught-up sink would look one record behind on every such partition for ever."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)


class Committer:
    """Commits and lag for one consumer; ``lag`` is the gauge labelled (topic, partition)."""

    def __init__(self, consumer: Any, lag: Any) -> None:
        self.consumer, self.lag = consumer, lag
        self.committed: dict[TopicPartition, int] = {}

    def reached(self, read: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Where a batch just read ends, per partition: the offset after its last record or, when the consumer
        has moved further over markers, its position (every record before it is in the batch). Taken when the
        batch is read: by the time it is written the consumer may be past a next batch, not yet written."""
        return {tp: max(nxt, self._position(tp) or 0) for tp, nxt in read.items()}

    def commit(self, read: Mapping[TopicPartition, int]) -> None:
        """Once a batch is durable: each partition it read, to where :meth:`reached` said it ends."""
        self._commit(dict(read))
        self.update_lag(read)

    def follow(self) -> None:
        """With nothing read: partitions whose position moved past markers alone are committed there."""
        moved = {}
        for tp in self._assigned():
            position = self._position(tp)
            if position is not None and position > self.committed.get(tp, -1):
                moved[tp] = position
        if moved:
            self._commit(moved)
        self.update_lag(self._assigned())

    def update_lag(self, tps: Iterable[TopicPartition]) -> None:
        """High watermark minus position, per partition."""
        for tp in tps:
            high, position = self._highwater(tp), self._position(tp)
            if high is not None and position is not None:
                self.lag.labels(tp.topic, str(tp.partition)).set(max(high - position, 0))

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:  # a rebalance: the batch is read again, and its upserts change nothing
            log.warning("offset commit failed (%s); the batch will be read again", exc)
            return
        self.committed.update(offsets)

    def _assigned(self) -> list[TopicPartition]:
        try:
            return list(self.consumer.assignment())
        except KafkaError:
            return []

    def _position(self, tp: TopicPartition) -> int | None:
        try:
            position: int | None = self.consumer.position(tp, timeout_ms=0)
        except (AssertionError, KafkaError):  # revoked by a rebalance since the batch was read
            return None
        return position

    def _highwater(self, tp: TopicPartition) -> int | None:
        try:
            high: int | None = self.consumer.highwater(tp)
        except (AssertionError, KafkaError):
            return None
        return high
