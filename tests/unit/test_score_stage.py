"""The score stage's ordered produce and commits, without a broker.

The stage is built from its real collaborators around fakes of Kafka and Triton, passed in through
their constructors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.control.drift_tracker import DriftTracker
from streams.control.routing import Route
from streams.knowledge import load_knowledge
from streams.metrics import create_metrics
from streams.score.aligner import Aligner
from streams.score.batch import Batch, Records, parse_batch
from streams.score.clock import PartitionClock
from streams.score.committer import Committer, InTransaction
from streams.score.dedup import RecentIds
from streams.score.publisher import Publisher
from streams.score.scorer import Scorer
from streams.score.stage import ScoreStage
from tests.unit.kafka_fakes import FakeProducer
from tonewatch.core.sections import ScoringSettings
from tonewatch.core.settings import Settings


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.rewound = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def seek_to_committed(self) -> None:
        self.rewound = True


class FakeReader(FakeConsumer):
    """The reader as the stage, aligner and committer see it: batches to hand out, offsets to commit."""

    def __init__(self, batches: list[Records] | None = None, assigned: tuple[str, ...] = (),
                 limits: ScoringSettings | None = None) -> None:
        super().__init__()
        self.batches = list(batches or [])
        self._assigned = list(assigned)
        self.limits = limits or Settings().scoring

    async def start(self, on_revoke: Any) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read(self) -> Batch:
        return parse_batch(self.batches.pop(0), self.limits) if self.batches else {}

    async def lags(self) -> dict[tuple[str, int], int]:
        return {}

    def assigned(self) -> list[str]:
        return self._assigned

    def inputs(self) -> list[str]:
        return []

    def highwater(self, tp: TopicPartition) -> int | None:
        return None  # no end known: the aligner never cuts a batch

    def seek(self, tp: TopicPartition, offset: int) -> None:
        raise AssertionError("nothing to seek")


class FakeTriton:
    def __init__(self, score: Any = None) -> None:
        self._score = score

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def score(self, texts: Any, keys: Any, routes: Any) -> Any:
        assert self._score is not None, "this test scores nothing"
        return await self._score(texts, keys, routes)


def uniform_outputs(n: int, sentiment: Any = None) -> dict[str, Any]:
    """What the fake Triton answers for ``n`` texts: equal sentiment probabilities (or ``sentiment``), two topics."""
    import numpy as np

    from streams.score.triton_client import ModelOutput

    s = Settings()
    sent = np.full((n, 3), 1 / 3, np.float32) if sentiment is None else sentiment
    return {s.triton.sentiment_model: ModelOutput(sent, ("negative", "neutral", "positive"), ("1",) * n),
            s.triton.topic_model: ModelOutput(np.full((n, 2), 0.5, np.float32), ("a", "b"), ("1",) * n)}


class FakeFollower:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def routes(self) -> dict[str, Route]:
        return {}


def _stage(concurrency: int = 2, reader: FakeReader | None = None, score: Any = None,
           producer: FakeProducer | None = None, guarantee: str = "at_least_once") -> tuple[ScoreStage, FakeReader]:
    """The stage from its real collaborators, with fakes for Kafka (``reader``, ``producer``) and Triton."""
    settings = Settings().updated(scoring__concurrency=concurrency, kafka__processing_guarantee=guarantee)
    metrics = create_metrics()
    reader = reader or FakeReader()
    made = producer or FakeProducer()
    scorer = Scorer(FakeTriton(score), FakeFollower(), (settings.triton.sentiment_model, settings.triton.topic_model),
                    load_knowledge(), metrics, settings.scoring.max_tickers)
    publisher = Publisher(settings, metrics, DriftTracker(settings, metrics), producer=lambda: made)
    clock = PartitionClock(settings.detector.allowed_lateness_s, settings.detector.idle_s)
    store = InTransaction(reader, clock) if publisher.transactional else reader
    stage = ScoreStage(reader, Aligner(reader), scorer, publisher, Committer(store, concurrency),
                       RecentIds(settings.scoring.dedup_capacity), metrics, clock)
    return stage, reader


def run_batches(batches: list[Records], score: Any = None, producer: FakeProducer | None = None,
                guarantee: str = "at_least_once", limits: ScoringSettings | None = None) -> FakeProducer:
    """Read, score and deliver each batch through the real stage; the producer holds what it sent."""
    made = producer or FakeProducer(limit=1000)

    async def run() -> None:
        stage, _ = _stage(reader=FakeReader(batches, limits=limits), score=score, producer=made, guarantee=guarantee)
        await stage.publisher.start()
        for _ in batches:
            await stage.step()
        await stage.committer.drain()

    asyncio.run(run())
    return made


def test_batches_commit_in_read_order_even_when_a_later_one_finishes_first() -> None:
    async def run() -> list[dict[TopicPartition, int]]:
        stage, consumer = _stage(concurrency=3)
        tp = TopicPartition("news", 0)
        first_done = asyncio.Event()

        async def batch(offset: int, wait: asyncio.Event | None) -> dict[TopicPartition, int]:
            if wait is not None:
                await wait.wait()
            return {tp: offset}

        stage.committer.track(asyncio.create_task(batch(10, first_done)))
        stage.committer.track(asyncio.create_task(batch(20, None)))
        await asyncio.sleep(0)
        await stage.committer.settle()  # the second is done, the first is not: nothing may be committed yet
        assert consumer.commits == []
        first_done.set()
        await stage.committer.settle(drain=True)
        return consumer.commits

    assert asyncio.run(run()) == [{TopicPartition("news", 0): 10}, {TopicPartition("news", 0): 20}]


def test_a_full_pipeline_waits_for_its_oldest_batch() -> None:
    async def run() -> tuple[int, int]:
        stage, consumer = _stage(concurrency=1)

        async def slow() -> dict[TopicPartition, int]:
            await asyncio.sleep(0.05)
            return {TopicPartition("chat", 1): 5}

        stage.committer.track(asyncio.create_task(slow()))
        await stage.committer.settle()  # one in flight with concurrency 1: wait for it
        return len(stage.committer), len(consumer.commits)

    assert asyncio.run(run()) == (0, 1)


def test_a_failed_batch_rewinds_to_the_last_commit_and_forgets_its_ids() -> None:
    async def run() -> tuple[bool, int, list[Any], int]:
        stage, consumer = _stage()
        stage.recent.add("seen-in-the-failed-batch")

        async def broken() -> dict[TopicPartition, int]:
            raise KeyError("bug")

        async def later() -> dict[TopicPartition, int]:
            return {TopicPartition("news", 0): 99}

        stage.committer.track(asyncio.create_task(broken()))
        stage.committer.track(asyncio.create_task(later()))
        await stage.committer.settle(drain=True)
        return consumer.rewound, len(stage.recent), consumer.commits, len(stage.committer)

    rewound, remembered, commits, pending = asyncio.run(run())
    assert rewound and remembered == 0 and pending == 0
    assert commits == []  # the later batch is read again too, never committed over the failed one


def test_outputs_reach_the_producer_in_read_order_when_a_later_batch_scores_first() -> None:
    """Event time runs forward within a partition: out of order, the windows agent would see late events."""
    import json
    from types import SimpleNamespace

    from streams.score.triton_client import ModelOutput

    async def run() -> list[str]:
        s = Settings()
        tp = TopicPartition(s.kafka.topic("news"), 0)

        def records(start: int) -> dict[TopicPartition, list[Any]]:
            return {tp: [SimpleNamespace(topic=tp.topic, partition=0, offset=i, key=None, value=json.dumps(
                {"id": f"m{i}", "source": "news", "ts": "2026-11-24T00:00:00Z", "text": f"headline {i}"}).encode())
                for i in range(start, start + 2)]}

        async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
            if keys[0] == "m0":
                await asyncio.sleep(0.05)  # the first batch's inference is the slow one
            return uniform_outputs(len(texts))

        producer = FakeProducer(limit=1000)
        stage, reader = _stage(concurrency=2, reader=FakeReader([records(0), records(2)]), score=score,
                               producer=producer)
        await stage.publisher.start()
        await stage.step()  # both batches in flight: the second one's inference finishes first
        await stage.step()
        await stage.committer.drain()
        offsets = reader.commits
        assert offsets == [{tp: 2}, {tp: 4}]
        return [json.loads(v)["id"] for t, _, recs in producer.sent if t == s.kafka.topic("scored") for _, v in recs]

    assert asyncio.run(run()) == ["m0", "m1", "m2", "m3"]


def _news(tp: TopicPartition, start: int, n: int = 2, minute: int = 0) -> dict[TopicPartition, list[Any]]:
    import json
    from types import SimpleNamespace

    return {tp: [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=i, key=None, value=json.dumps(
        {"id": f"m{i}", "source": "news", "ts": f"2026-11-24T00:{minute:02d}:00Z", "text": f"$TSLA falls {i}"}
    ).encode()) for i in range(start, start + n)]}


async def _uniform(texts: list[str], keys: list[str], routes: Any) -> Any:
    return uniform_outputs(len(texts))


def test_exactly_once_commits_each_batch_with_its_outputs_in_one_transaction_in_read_order() -> None:
    """The offsets (with the partition time reached) travel in the transaction that holds the batch's outputs;
    nothing is committed outside one, so a crash leaves either both or neither."""
    import json

    async def run() -> tuple[FakeProducer, FakeReader]:
        tp = TopicPartition(Settings().kafka.topic("news"), 0)
        producer = FakeProducer(limit=1000)
        stage, reader = _stage(reader=FakeReader([_news(tp, 0), _news(tp, 2, minute=5)]), score=_uniform,
                               producer=producer, guarantee="exactly_once")
        await stage.publisher.start()
        await stage.step()
        await stage.step()
        await stage.committer.drain()
        return producer, reader

    from datetime import UTC, datetime

    producer, reader = asyncio.run(run())
    tp = TopicPartition(Settings().kafka.topic("news"), 0)
    midnight = datetime(2026, 11, 24, tzinfo=UTC).timestamp()
    assert reader.commits == []
    assert [{k: (o, json.loads(meta)) for k, (o, meta) in c.items()} for c in producer.committed] == [
        {tp: (2, {"partition_time": midnight})}, {tp: (4, {"partition_time": midnight + 300})}]
    assert not producer.in_transaction and producer.aborted == 0


def test_exactly_once_aborts_a_transaction_whose_send_failed_and_sends_it_all_again() -> None:
    class FlakyProducer(FakeProducer):
        async def commit_transaction(self) -> None:
            try:
                await super().commit_transaction()
            finally:
                self.fail = False  # the broker is back for the retry

    tp = TopicPartition(Settings().kafka.topic("news"), 0)
    producer = run_batches([_news(tp, 0)], _uniform, FlakyProducer(limit=1000, fail=True), "exactly_once")
    scored = Settings().kafka.topic("scored")
    assert producer.aborted == 1 and len(producer.committed) == 1
    assert sum(len(recs) for t, _, recs in producer.sent if t == scored) == 4  # twice: aborted, then committed


def test_a_batch_spanning_partitions_is_emitted_in_event_time_order() -> None:
    """A backlog comes a partition at a time; folded in read order, one topic's events would be 'late'."""
    import json
    from types import SimpleNamespace

    from streams.score.triton_client import ModelOutput

    async def run() -> list[str]:
        s = Settings()

        async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
            return uniform_outputs(len(texts))

        def rec(topic: str, offset: int, minute: int) -> Any:
            body = {"id": f"{topic}-{minute}", "source": topic, "ts": f"2026-11-24T00:{minute:02d}:00Z",
                    "text": "$TSLA falls"}
            return SimpleNamespace(topic=topic, partition=0, offset=offset, key=None, value=json.dumps(body).encode())

        batch = {TopicPartition("news", 0): [rec("news", 0, 5), rec("news", 1, 9)],
                 TopicPartition("chat", 0): [rec("chat", 0, 1), rec("chat", 1, 7)]}
        producer = FakeProducer(limit=1000)
        stage, _ = _stage(reader=FakeReader([batch]), score=score, producer=producer)
        await stage.publisher.start()
        await stage.step()
        await stage.committer.drain()
        return [json.loads(v)["id"] for t, _, recs in producer.sent if t == s.kafka.topic("scored") for _, v in recs]

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

    news, chat = TopicPartition("news", 0), TopicPartition("chat", 0)
    records = {chat: [rec("chat", 0, 1), rec("chat", 1, 3), rec("chat", 2, 8), rec("chat", 3, 9)],
               news: [rec("news", 0, 2), rec("news", 1, 4)]}
    consumer = Consumer()
    batch = Aligner(consumer).align(parse_batch(records, Settings().scoring))
    assert [r.offset for r, _ in batch[chat]] == [0, 1] and len(batch[news]) == 2
    assert consumer.seeks == [(chat, 2)]


def test_the_factory_wires_one_reader_into_the_aligner_committer_and_read_sizing() -> None:
    from streams.score.stage import build_score_stage

    stage = build_score_stage(Settings().updated(scoring__concurrency=3), create_metrics(), load_knowledge())
    reader = stage.reader
    store = stage.committer.offsets
    assert stage.aligner.positions is reader
    assert isinstance(store, InTransaction) and store.reader is reader and store.clock is stage.clock  # exactly-once
    assert stage.committer.concurrency == 3
    plain = build_score_stage(Settings().updated(kafka__processing_guarantee="at_least_once"), create_metrics(),
                              load_knowledge())
    assert plain.committer.offsets is plain.reader
    stage.scorer.observe(64, 0.5)  # the scorer's inference times size the reader's next batches
    assert reader.read_size.rate == 128  # type: ignore[attr-defined]


def test_an_input_too_large_is_dead_lettered_unparsed_and_every_output_fits_a_kafka_record() -> None:
    """A near-1 MB input made a scored record over the broker's limit, which failed its batch for ever."""
    import json

    from streams.score.outbox import MAX_RECORD_BYTES

    tp = TopicPartition(Settings().kafka.topic("news"), 0)
    huge = _news(tp, 0, n=1)
    huge[tp][0].value = json.dumps({"id": "big", "source": "news", "ts": "2026-11-24T00:00:00Z",
                                    "text": "$TSLA " + "é" * 499_000}, ensure_ascii=False).encode()

    producer = run_batches([huge, _news(tp, 1)], _uniform)
    records = [(t, k, v) for t, _, recs in producer.sent for k, v in recs]
    dead = [json.loads(v) for t, _, v in records if t.endswith(".dead-letter")]
    assert [(d["stage"], d["reason"].split(":")[0]) for d in dead] == [("validate", "998079 bytes")]
    assert all(len(v) + len(k or b"") <= MAX_RECORD_BYTES for _, k, v in records)
    assert sum(1 for t, _, _ in records if t.endswith(".scored")) == 2  # the batch after it goes on


def test_a_scored_record_that_cannot_fit_is_dead_lettered_not_retried() -> None:
    import json

    tp = TopicPartition(Settings().kafka.topic("news"), 0)
    big = _news(tp, 0, n=1)
    big[tp][0].value = json.dumps({"id": "big", "source": "news", "ts": "2026-11-24T00:00:00Z",
                                   "text": "€" * 400_000}, ensure_ascii=False).encode()  # 1.2 MB, 3 bytes a char
    # the input limits cannot let such a record through; a reader with none shows the last guard
    unlimited = Settings().scoring.model_copy(update={"max_message_bytes": 2_000_000, "max_text_chars": 500_000})

    producer = run_batches([big], _uniform, limits=unlimited)
    topics = [t.rsplit(".", 1)[1] for t, _, _ in producer.sent]
    dead = [json.loads(v) for t, _, recs in producer.sent if t.endswith(".dead-letter") for _, v in recs]
    assert "scored" not in topics and [d["stage"] for d in dead] == ["score"], topics
    assert "over the 1000000 a Kafka record may hold" in dead[0]["reason"]


def test_a_broker_refusing_the_records_for_good_stops_the_stage_instead_of_retrying_silently() -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    from streams.score.publisher import ProduceRefused

    class Refusing(FakeProducer):
        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
            raise TopicAuthorizationFailedError(topic)

    async def run() -> None:
        tp = TopicPartition(Settings().kafka.topic("news"), 0)
        stage, _ = _stage(reader=FakeReader([_news(tp, 0)]), score=_uniform, producer=Refusing(limit=1000))
        await stage.publisher.start()
        await stage.step()
        await stage.committer.drain()

    with pytest.raises(ProduceRefused, match="refuses this worker's records"):
        asyncio.run(asyncio.wait_for(run(), timeout=30))


def test_a_message_triton_refuses_alone_is_the_only_one_dead_lettered() -> None:
    """A non-retryable error used to dead-letter, and commit, every message of the batch (up to 2,048)."""
    import json

    calls: list[int] = []

    async def score(texts: list[str], keys: list[str], routes: Any) -> Any:
        calls.append(len(texts))
        if "m13" in keys:
            raise ValueError("INVALID_ARG: the tokenizer cannot read this text")
        return uniform_outputs(len(texts))

    producer = run_batches([_news(TopicPartition(Settings().kafka.topic("news"), 0), 0, n=64)], score)
    dead = [json.loads(v) for t, _, recs in producer.sent if t.endswith(".dead-letter") for _, v in recs]
    scored = [json.loads(v)["id"] for t, _, recs in producer.sent if t.endswith(".scored") for _, v in recs]
    assert [(d["stage"], d["offset"]) for d in dead] == [("score", 13)]
    assert "INVALID_ARG" in dead[0]["reason"] and len(scored) == 63
    assert len(calls) <= 2 * 6 + 1  # two requests per halving of 64
