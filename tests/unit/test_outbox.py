"""Produce packing: keyed partitions as Kafka's client picks them, one record batch per partition, in order."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams.score.outbox import Outbox, murmur2, murmur2_many, partition_for
from tests.unit.kafka_fakes import FakeProducer


def test_partition_is_the_one_a_keyed_send_picks() -> None:
    parts = [0, 1, 2, 3]
    for key in (b"ticker|AAPL", b"topic|M&A", b"source|chat", b"x" * 300):
        assert partition_for(key, parts) == DefaultPartitioner()(key, parts, parts)


def test_murmur2_is_kafkas() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(20)]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF  # the Java client's own test vector (Utils.murmur2)


def test_hashing_many_keys_at_once_gives_each_keys_murmur2() -> None:
    rng = random.Random(11)
    # lengths shared by many keys take the numpy path, rare ones the scalar one; all four tails of a word
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in (0, 1, 2, 3, 4, 5, 6, 7, 36, 37) for _ in range(40)]
    keys += [b"rare"] + [bytes(rng.randrange(256) for _ in range(n)) for n in range(8, 30)]
    rng.shuffle(keys)
    assert murmur2_many(keys) == [aiokafka_murmur2(k) for k in keys]
    assert murmur2_many([]) == []


def test_keyed_records_added_together_land_where_a_keyed_send_puts_them() -> None:
    parts = [0, 1, 2]
    records = [(f"id-{i}".encode(), f"v{i}".encode()) for i in range(100)]
    out = Outbox({"s": parts})
    out.add_many("s", records)
    assert out.records == [("s", DefaultPartitioner()(k, parts, parts), k, v) for k, v in records]


async def _deliver(out: Outbox, producer: FakeProducer) -> None:
    await asyncio.gather(*await out.enqueue(producer))


def test_outbox_packs_per_partition_in_order_and_splits_full_batches() -> None:
    out = Outbox({"a": [0], "b": [0, 1]})
    for i in range(5):
        out.add("a", b"k", f"v{i}".encode())
    out.add("b", b"ticker|AAPL", b"t")
    producer = FakeProducer(limit=2)
    asyncio.run(_deliver(out, producer))
    a_batches = [records for topic, _, records in producer.sent if topic == "a"]
    assert [[v for _, v in b] for b in a_batches] == [[b"v0", b"v1"], [b"v2", b"v3"], [b"v4"]]
    assert [(t, p) for t, p, _ in producer.sent if t == "b"] == [("b", partition_for(b"ticker|AAPL", [0, 1]))]


def test_outbox_delivery_failure_raises() -> None:
    out = Outbox({"a": [0]})
    out.add("a", b"k", b"v")
    with pytest.raises(RuntimeError, match="broker gone"):
        asyncio.run(_deliver(out, FakeProducer(fail=True)))
