"""The score stage's produce packing and ordered commits, without a broker."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams.knowledge import load_knowledge
from streams.metrics import create_metrics
from streams.score.outbox import Outbox, murmur2, partition_for
from streams.score.stage import ScoreStage
from tonewatch.core.settings import Settings


def test_partition_is_the_one_a_keyed_send_picks() -> None:
    parts = [0, 1, 2, 3]
    for key in (b"ticker|AAPL", b"topic|M&A", b"source|chat", b"x" * 300):
        assert partition_for(key, parts) == DefaultPartitioner()(key, parts, parts)


def test_murmur2_is_kafkas() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(20)]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF  # the Java client's own test vector (Utils.murmur2)


class FakeBatch:
    def __init__(self, limit: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.limit = limit

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if self.records and len(self.records) >= self.limit:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    def __init__(self, limit: int = 2, fail: bool = False) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.limit, self.fail = limit, fail

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.limit)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("broker gone"))
        else:
            fut.set_result(None)
        return fut


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


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.rewound = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def seek_to_committed(self) -> None:
        self.rewound = True


def _stage(concurrency: int = 2) -> tuple[ScoreStage, FakeConsumer]:
    stage = ScoreStage(Settings(score_concurrency=concurrency), create_metrics(), load_knowledge())
    consumer = FakeConsumer()
    stage.consumer = consumer
    return stage, consumer


def test_batches_commit_in_read_order_even_when_a_later_one_finishes_first() -> None:
    async def run() -> list[dict[TopicPartition, int]]:
        stage, consumer = _stage(concurrency=3)
        tp = TopicPartition("news", 0)
        first_done = asyncio.Event()

        async def batch(offset: int, wait: asyncio.Event | None) -> dict[TopicPartition, int]:
            if wait is not None:
                await wait.wait()
            return {tp: offset}

        stage._pending.append(asyncio.create_task(batch(10, first_done)))
        stage._pending.append(asyncio.create_task(batch(20, None)))
        await asyncio.sleep(0)
        await stage._settle()  # the second is done, the first is not: nothing may be committed yet
        assert consumer.commits == []
        first_done.set()
        await stage._settle(drain=True)
        return consumer.commits

    assert asyncio.run(run()) == [{TopicPartition("news", 0): 10}, {TopicPartition("news", 0): 20}]


def test_a_full_pipeline_waits_for_its_oldest_batch() -> None:
    async def run() -> tuple[int, int]:
        stage, consumer = _stage(concurrency=1)

        async def slow() -> dict[TopicPartition, int]:
            await asyncio.sleep(0.05)
            return {TopicPartition("chat", 1): 5}

        stage._pending.append(asyncio.create_task(slow()))
        await stage._settle()  # one in flight with concurrency 1: wait for it
        return len(stage._pending), len(consumer.commits)

    assert asyncio.run(run()) == (0, 1)


def test_a_failed_batch_rewinds_to_the_last_commit_and_forgets_its_ids() -> None:
    async def run() -> tuple[bool, int, list[Any], int]:
        stage, consumer = _stage()
        stage.recent.add("seen-in-the-failed-batch")

        async def broken() -> dict[TopicPartition, int]:
            raise KeyError("bug")

        async def later() -> dict[TopicPartition, int]:
            return {TopicPartition("news", 0): 99}

        stage._pending.extend([asyncio.create_task(broken()), asyncio.create_task(later())])
        await stage._settle(drain=True)
        return consumer.rewound, len(stage.recent), consumer.commits, len(stage._pending)

    rewound, remembered, commits, pending = asyncio.run(run())
    assert rewound and remembered == 0 and pending == 0
    assert commits == []  # the later batch is read again too, never committed over the failed one


def test_outputs_reach_the_producer_in_read_order_when_a_later_batch_scores_first() -> None:
    """Event time runs forward within a partition: out of order, the windows agent would see late events."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from streams.score.scoring import ModelOutput

    async def run() -> list[str]:
        stage, _ = _stage(concurrency=2)
        s = stage.s
        stage._partitions = {s.topic(t): [0] for t in ("scored", "trend-events", "dead-letter", "model-events")}
        producer = FakeProducer(limit=1000)
        stage.producer = producer

        async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
            if keys[0] == "m0":
                await asyncio.sleep(0.05)  # the first batch's inference is the slow one
            n = len(texts)
            return {s.sentiment_model: ModelOutput(np.full((n, 3), 1 / 3, np.float32),
                                                   ("negative", "neutral", "positive"), ("1",) * n),
                    s.topic_model: ModelOutput(np.full((n, 2), 0.5, np.float32), ("a", "b"), ("1",) * n)}

        stage.scorer.score = score  # type: ignore[method-assign,assignment]
        tp = TopicPartition(s.topic("news"), 0)

        def records(start: int) -> dict[TopicPartition, list[Any]]:
            return {tp: [SimpleNamespace(topic=tp.topic, partition=0, offset=i, key=None, value=json.dumps(
                {"id": f"m{i}", "source": "news", "ts": "2026-11-24T00:00:00Z", "text": f"headline {i}"}).encode())
                for i in range(start, start + 2)]}

        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        second: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        offsets = await asyncio.gather(stage._process(stage._parse(records(0)), None, first),
                                       stage._process(stage._parse(records(2)), first, second))
        assert offsets == [{tp: 2}, {tp: 4}]
        return [json.loads(v)["id"] for t, _, recs in producer.sent if t == s.topic("scored") for _, v in recs]

    assert asyncio.run(run()) == ["m0", "m1", "m2", "m3"]


def test_a_batch_spanning_partitions_is_emitted_in_event_time_order() -> None:
    """A backlog comes a partition at a time; folded in read order, one topic's events would be 'late'."""
    import json
    from types import SimpleNamespace

    import numpy as np

    from streams.score.scoring import ModelOutput

    async def run() -> list[str]:
        stage, _ = _stage()
        s = stage.s
        stage._partitions = {s.topic(t): [0] for t in ("scored", "trend-events", "dead-letter", "model-events")}
        producer = FakeProducer(limit=1000)
        stage.producer = producer

        async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
            n = len(texts)
            return {s.sentiment_model: ModelOutput(np.full((n, 3), 1 / 3, np.float32),
                                                   ("negative", "neutral", "positive"), ("1",) * n),
                    s.topic_model: ModelOutput(np.full((n, 2), 0.5, np.float32), ("a", "b"), ("1",) * n)}

        stage.scorer.score = score  # type: ignore[method-assign,assignment]

        def rec(topic: str, offset: int, minute: int) -> Any:
            body = {"id": f"{topic}-{minute}", "source": topic, "ts": f"2026-11-24T00:{minute:02d}:00Z",
                    "text": "$TSLA falls"}
            return SimpleNamespace(topic=topic, partition=0, offset=offset, key=None, value=json.dumps(body).encode())

        batch = {TopicPartition("news", 0): [rec("news", 0, 5), rec("news", 1, 9)],
                 TopicPartition("chat", 0): [rec("chat", 0, 1), rec("chat", 1, 7)]}
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await stage._process(stage._parse(batch), None, turn)
        return [json.loads(v)["id"] for t, _, recs in producer.sent if t == s.topic("scored") for _, v in recs]

    assert asyncio.run(run()) == ["chat-1", "news-5", "chat-7", "news-9"]


def test_a_partition_ahead_is_cut_and_read_again_from_its_first_record_left_out() -> None:
    import json
    from types import SimpleNamespace

    class Consumer:
        def __init__(self) -> None:
            self.seeks: list[tuple[TopicPartition, int]] = []

        def highwater(self, tp: TopicPartition) -> int:
            return 500 if tp.topic == "news" else 4  # news has more to read; chat was read to its end

        def seek(self, tp: TopicPartition, offset: int) -> None:
            self.seeks.append((tp, offset))

    def rec(topic: str, offset: int, minute: int) -> Any:
        body = {"id": f"{topic}-{offset}", "source": topic, "ts": f"2026-11-24T00:{minute:02d}:00Z", "text": "x"}
        return SimpleNamespace(topic=topic, partition=0, offset=offset, key=None, value=json.dumps(body).encode())

    stage, _ = _stage()
    news, chat = TopicPartition("news", 0), TopicPartition("chat", 0)
    records = {chat: [rec("chat", 0, 1), rec("chat", 1, 3), rec("chat", 2, 8), rec("chat", 3, 9)],
               news: [rec("news", 0, 2), rec("news", 1, 4)]}
    consumer = Consumer()
    batch = stage._aligned(consumer, stage._parse(records))  # type: ignore[arg-type]
    assert [r.offset for r, _ in batch[chat]] == [0, 1] and len(batch[news]) == 2
    assert consumer.seeks == [(chat, 2)]
