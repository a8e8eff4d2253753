"""A consumer batch's output records, produced as one Kafka record batch per partition.

``AIOKafkaProducer.send`` pays for a future, callbacks and a partitioner call per record; appending to
a ``BatchBuilder`` is a fraction of that and the whole partition's batch gets one future. With two or
more output records per message, that is most of the produce cost (figures: benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_M32 = 0xFFFFFFFF
_M = 0x5BD1E995
_FEW = 16  # fewer keys of one length than this: hashed one by one, numpy's per-call cost would dominate


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``Utils.murmur2``), as aiokafka's but reading 4-byte words at once: it runs for
    every output record."""
    length, m = len(data), _M
    h = (0x9747B28C ^ length) & _M32
    for k in struct.unpack_from(f"<{length // 4}I", data):
        k = (k * m) & _M32
        k ^= k >> 24
        h = ((h * m) & _M32) ^ ((k * m) & _M32)
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    return h ^ (h >> 15)


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """:func:`murmur2` of each key, computed for all keys of one length at once with numpy (a batch's
    scored records are keyed by ids of mostly one length): the per-record hash was 5 % of the score stage."""
    hashes = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, rows in by_length.items():
        if len(rows) < _FEW:
            for i in rows:
                hashes[i] = murmur2(keys[i])
            continue
        for i, h in zip(rows, _murmur2_same_length([keys[i] for i in rows], length).tolist(), strict=True):
            hashes[i] = h
    return hashes


def _murmur2_same_length(keys: list[bytes], length: int) -> np.ndarray:
    """The same arithmetic as :func:`murmur2`, a column of 32-bit words at a time; products of two 32-bit
    values fit in uint64, masked back to 32 bits after each as the scalar version does."""
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length).astype(np.uint64)
    h = np.full(len(keys), (0x9747B28C ^ length) & _M32, dtype=np.uint64)
    m, m32 = np.uint64(_M), np.uint64(_M32)
    for w in range(length // 4):
        b = data[:, 4 * w:4 * w + 4]
        k = b[:, 0] | (b[:, 1] << np.uint64(8)) | (b[:, 2] << np.uint64(16)) | (b[:, 3] << np.uint64(24))
        k = (k * m) & m32
        k ^= k >> np.uint64(24)
        h = ((h * m) & m32) ^ ((k * m) & m32)
    rest, tail = length & 3, length & ~3
    if rest:
        if rest == 3:
            h ^= data[:, tail + 2] << np.uint64(16)
        if rest >= 2:
            h ^= data[:, tail + 1] << np.uint64(8)
        h = ((h ^ data[:, tail]) * m) & m32
    h ^= h >> np.uint64(13)
    h = (h * m) & m32
    return h ^ (h >> np.uint64(15))


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The Java client's default partitioner (and aiokafka's): records keep the partition a keyed
    ``send`` would give them, so the windows agent's table stays co-partitioned with its input."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


# Kafka's default max.message.bytes is 1,048,588 per record batch; a record alone must leave room for the
# batch's own header and the record's (offsets, timestamps, lengths)
MAX_RECORD_BYTES = 1_000_000


def fits(key: bytes | None, value: bytes) -> bool:
    """Whether a record can be produced at all: one that cannot would fail its whole batch, again and again."""
    return len(value) + len(key or b"") <= MAX_RECORD_BYTES


class Outbox:
    """Records collected while a batch is processed, delivered together (and again, whole, on a retry)."""

    def __init__(self, partitions: Mapping[str, Sequence[int]]) -> None:
        self._partitions = partitions
        self.records: list[tuple[str, int, bytes | None, bytes]] = []  # topic, partition, key, value

    def __len__(self) -> int:
        return len(self.records)

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, partition_for(key, self._partitions[topic]), key, value))

    def add_many(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Keyed records (key, value), in order; their partitions computed together (:func:`murmur2_many`)."""
        parts = self._partitions[topic]
        hashes = murmur2_many([key for key, _ in records])
        self.records.extend((topic, parts[(h & 0x7FFFFFFF) % len(parts)], key, value)
                            for h, (key, value) in zip(hashes, records, strict=True))

    def add_to(self, topic: str, partition: int, value: bytes) -> None:
        """A record without a key, on a partition the caller chose (a record of many keys of that partition)."""
        self.records.append((topic, partition, None, value))

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
