"""What a batch's outputs hold: late messages scored but not counted, unusable model outputs dead-lettered alone,
and the stage's marks after its partials."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from tests.unit.kafka_fakes import FakeProducer
from tests.unit.test_score_stage import FakeReader, _stage, uniform_outputs
from tonewatch.core.settings import Settings


def test_a_message_late_behind_its_partition_is_scored_dead_lettered_and_not_counted() -> None:
    import json
    from types import SimpleNamespace

    from streams.score.triton_client import ModelOutput

    async def run() -> FakeProducer:
        async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
            return uniform_outputs(len(texts))

        def rec(offset: int, minute: int) -> Any:
            body = {"id": f"n{offset}", "source": "news", "ts": f"2026-11-24T00:{minute:02d}:00Z", "text": "$TSLA"}
            return SimpleNamespace(topic="news", partition=0, offset=offset, key=None, value=json.dumps(body).encode())

        # minute 1 comes after minute 9 on the same partition: 8 minutes behind it, past the 2-minute lateness
        batch = {TopicPartition("news", 0): [rec(0, 5), rec(1, 9), rec(2, 1)]}
        producer = FakeProducer(limit=1000)
        stage, _ = _stage(reader=FakeReader([batch], assigned=("news/0",)), score=score, producer=producer)
        await stage.publisher.start()
        await stage.step()
        await stage.committer.drain()
        return producer

    sent = asyncio.run(run()).sent
    s = Settings()
    scored = [json.loads(v)["id"] for t, _, recs in sent if t == s.kafka.topic("scored") for _, v in recs]
    dead = [json.loads(v) for t, _, recs in sent if t == s.kafka.topic("dead-letter") for _, v in recs]
    partials = [json.loads(v) for t, _, recs in sent if t == s.kafka.topic("trend-events") for _, v in recs]
    assert sorted(scored) == ["n0", "n1", "n2"]
    assert [(d["stage"], d["offset"]) for d in dead] == [("late", 2)]
    counted = {i for p in partials for q in p.get("partials", []) for i in q["message_ids"]}
    assert counted == {"n0", "n1"}
    minute_9 = datetime(2026, 11, 24, 0, 9, tzinfo=UTC).timestamp()
    assert [p["marks"] for p in partials if "marks" in p] == [{"news/0": [minute_9, False]}]  # after the partials


def test_a_message_with_non_finite_probabilities_is_dead_lettered_alone() -> None:
    import json
    from types import SimpleNamespace

    import numpy as np

    from streams.score.scorer import NON_FINITE
    from streams.score.triton_client import ModelOutput

    s = Settings()

    async def score(texts: list[str], keys: list[str], routes: Any) -> dict[str, ModelOutput]:
        sent = np.full((len(texts), 3), 1 / 3, np.float32)
        sent[1, 0] = np.nan  # fp16 overflow on a GPU, say
        return uniform_outputs(len(texts), sent)

    def rec(offset: int) -> Any:
        body = {"id": f"n{offset}", "source": "news", "ts": "2026-11-24T00:00:00Z", "text": "$TSLA"}
        return SimpleNamespace(topic="news", partition=0, offset=offset, key=None, value=json.dumps(body).encode())

    async def run() -> list[tuple[str, int, list[tuple[bytes, bytes]]]]:
        producer = FakeProducer(limit=1000)
        stage, _ = _stage(reader=FakeReader([{TopicPartition("news", 0): [rec(0), rec(1), rec(2)]}]), score=score,
                          producer=producer)
        await stage.publisher.start()
        await stage.step()
        await stage.committer.drain()
        return producer.sent

    sent = asyncio.run(run())
    scored = [json.loads(v)["id"] for t, _, recs in sent if t == s.kafka.topic("scored") for _, v in recs]
    dead = [json.loads(v) for t, _, recs in sent if t == s.kafka.topic("dead-letter") for _, v in recs]
    assert scored == ["n0", "n2"]
    assert [(d["stage"], d["offset"], d["reason"]) for d in dead] == [("score", 1, NON_FINITE)]
