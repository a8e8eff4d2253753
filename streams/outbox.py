"""A consumer batch's output records, produced as one Kafka record batch per partition.

``AIOKafkaProducer.send`` costs about 30 µs a record in Python (a future, callbacks and a
partitioner call each); appending to a ``BatchBuilder`` costs about 8 µs and the whole
partition's batch gets one future. At thousands of messages a second, with two or more output
records per message, that difference is most of the produce cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The Java client's default partitioner (and aiokafka's): records keep the partition a keyed
    ``send`` would give them, so the windows agent's table stays co-partitioned with its input."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Outbox:
    """Records collected while a batch is processed, delivered together (and again, whole, on a retry)."""

    def __init__(self, partitions: Mapping[str, Sequence[int]]) -> None:
        self._partitions = partitions
        self.records: list[tuple[str, int, bytes, bytes]] = []  # topic, partition, key, value

    def __len__(self) -> int:
        return len(self.records)

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, partition_for(key, self._partitions[topic]), key, value))

    async def enqueue(self, producer: Any) -> list[asyncio.Future[Any]]:
        """Hand every record to the producer; the futures resolve once the broker has them.

        Per partition the records keep their order, and batches enqueued later go after them; a record too
        big for one batch goes alone in its own.
        """
        builders: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for topic, partition, key, value in self.records:
            batch = builders.get((topic, partition))
            if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
                if batch is not None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = builders[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a {len(value)}-byte record does not fit an empty batch for {topic}")
        for (topic, partition), batch in builders.items():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
