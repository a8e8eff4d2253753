"""The score stage's reader: its own aiokafka consumer of the input topics, a sized batch at a time.

Its own consumer instead of a Faust agent: Faust's per-record event, ack and offset bookkeeping cost about
as much as the scoring itself, and its commit rule lost records after a kill -9 (streams/score/offsets.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.score.adopt import adopt_faust_offsets
from streams.score.batch import Batch, Offsets, Records, parse_batch
from streams.score.clock import PartitionClock, partition_name
from streams.score.fetch_wait import FETCH_MAX_WAIT_MS
from streams.score.read_size import ReadSize
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INPUTS

log = logging.getLogger(__name__)
LAGGING_WAIT_MS = 200  # for a partition known to be behind, before a batch goes without it

OnRevoke = Callable[[], Awaitable[None]]


class BatchSource(Protocol):
    """What the score stage needs of its reader (the unit tests pass a fake)."""

    async def start(self, on_revoke: OnRevoke) -> None: ...
    async def stop(self) -> None: ...
    async def read(self) -> Batch: ...
    async def lags(self) -> dict[tuple[str, int], int]: ...
    def assigned(self) -> list[str]: ...
    def inputs(self) -> list[str]: ...


class Reader:
    """Consumer lifecycle, read sizing and fetching; also the positions the aligner and committer move."""

    def __init__(self, settings: Settings, read_size: ReadSize, clock: PartitionClock) -> None:
        self.settings = settings
        self.read_size = read_size
        self.clock = clock
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self, on_revoke: OnRevoke) -> None:
        """Join the score group; ``on_revoke`` delivers and commits what was read before partitions move."""
        await adopt_faust_offsets(self.settings)
        settings = self.settings
        session_ms = int(settings.kafka.session_timeout_s * 1000)
        self.consumer = AIOKafkaConsumer(
            **aiokafka_config(settings.kafka), group_id=settings.kafka.score_group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=settings.scoring.batch_records,
            session_timeout_ms=session_ms, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            heartbeat_interval_ms=max(session_ms // 3, 100),
        )
        self.consumer.subscribe([settings.kafka.topic(t) for t in INPUTS],
                                listener=_Rebalance(on_revoke, self._restore, self.clock))
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: its partitions move to the other workers now

    def _require(self) -> AIOKafkaConsumer:
        assert self.consumer is not None, "Reader.start() was not awaited"
        return self.consumer

    async def read(self) -> Batch:
        """The next batch, parsed; empty when nothing came within ``batch_timeout_s``."""
        consumer = self._require()
        size = self.read_size.next()
        records = await consumer.getmany(timeout_ms=int(self.settings.scoring.batch_timeout_s * 1000), max_records=size)
        if records:
            records.update(await self._lagging_partitions(consumer, records, size))
        await self._note_caught_up(consumer, records)
        return parse_batch(records, self.settings.scoring) if records else {}

    async def _note_caught_up(self, consumer: AIOKafkaConsumer, records: Records) -> None:
        """Which partitions have nothing left to read: an idle one stops holding the watermark back."""
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            nothing_left = tp not in records and high is not None and await consumer.position(tp) >= high
            self.clock.caught_up(partition_name(tp.topic, tp.partition), nothing_left)

    def assigned(self) -> list[str]:
        """The input partitions this reader holds, as the marks name them."""
        consumer = self.consumer
        names = [] if consumer is None else [partition_name(tp.topic, tp.partition) for tp in consumer.assignment()]
        return sorted(names)

    def inputs(self) -> list[str]:
        """Every input partition, whoever holds it: the watermark waits for all of them."""
        consumer = self.consumer
        if consumer is None:
            return []
        topics = [self.settings.kafka.topic(t) for t in INPUTS]
        return sorted(partition_name(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ())

    async def _restore(self, assigned: list[TopicPartition]) -> None:
        """Each partition's time as committed with its offset, so lateness is judged as its last owner did."""
        if not assigned:
            return
        admin = AIOKafkaAdminClient(**aiokafka_config(self.settings.kafka))
        committed: dict[TopicPartition, Any] = {}
        try:
            await admin.start()
            committed = await admin.list_consumer_group_offsets(self.settings.kafka.score_group_id, partitions=assigned)
        finally:
            await admin.close()
        for tp in assigned:
            meta = committed.get(tp)
            self.clock.restore(partition_name(tp.topic, tp.partition), getattr(meta, "metadata", None))

    async def _lagging_partitions(self, consumer: AIOKafkaConsumer, records: Records, size: int) -> Records:
        """Records of assigned partitions that are behind but missing from ``records``, waiting briefly.

        After an outage the backlog is fetched a partition at a time; waiting keeps a batch's partitions
        close in event time (Kafka Streams' ``max.task.idle.ms`` waits for the same).
        """
        behind = []
        for tp in consumer.assignment():
            if tp in records:
                continue
            high = consumer.highwater(tp)  # None before the first fetch answer: nothing known to wait for
            if high is not None and high > await consumer.position(tp):
                behind.append(tp)
        if not behind:
            return {}
        return await consumer.getmany(*behind, timeout_ms=LAGGING_WAIT_MS, max_records=size)

    # --- positions: for the aligner (highwater, seek) and the committer (commit, seek_to_committed) ---
    def highwater(self, tp: TopicPartition) -> int | None:
        return self._require().highwater(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._require().seek(tp, offset)

    async def commit(self, offsets: Offsets) -> None:
        """Each offset with the partition time reached there (streams/score/clock.py)."""
        if offsets:
            await self._require().commit({tp: (o, self.clock.metadata(partition_name(tp.topic, tp.partition), o))
                                          for tp, o in offsets.items()})

    async def seek_to_committed(self) -> None:
        if self.consumer is not None:
            await self.consumer.seek_to_committed()

    async def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the end per assigned input partition (the consumer-lag gauge)."""
        return await partition_lags(self.consumer) if self.consumer is not None else {}


async def partition_lags(consumer: Any) -> dict[tuple[str, int], int]:
    """Records behind the end per assigned partition, for an aiokafka consumer or Faust's (same calls)."""
    lags = {}
    for tp in consumer.assignment():
        with contextlib.suppress(Exception):  # no position yet right after an assignment
            high, position = consumer.highwater(tp), await consumer.position(tp)
            if high is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(high - position, 0)
    return lags


class _Rebalance(ConsumerRebalanceListener):
    """Before partitions move: deliver and commit what was read from them. After: restore their times."""

    def __init__(self, on_revoke: OnRevoke, restore: Callable[[list[TopicPartition]], Awaitable[None]],
                 clock: PartitionClock) -> None:
        self.on_revoke, self.restore, self.clock = on_revoke, restore, clock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.on_revoke()
        self.clock.forget(partition_name(tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            await self.restore(list(assigned))
        except Exception:  # no answer: the partitions start fresh; only their first late messages may differ
            log.warning("could not read the committed partition times", exc_info=True)
