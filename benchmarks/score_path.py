"""The score stage's own per-message cost, without a broker or Triton: the figure behind each hot-path step.

    .venv/bin/python -m benchmarks.score_path [--messages 81920] [--chat 0.0] [--runs 3]

Builds the real stage (parse, admit, align, the scorer's join, the publisher's scored records, trend
partials, drift, marks and aiokafka's own record batches) around an in-memory reader of the bench's
headlines (tonewatch/perf/workload.py) and a Triton that answers at once with the trivial models' label
sets, with the worker's garbage-collector tuning. Prints one JSON line per run, then the median msg/s.
``--chat``: the share sent as chat, whose text is masked (the bench itself sends news only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import numpy as np
from aiokafka import TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord

from streams.app import tune_gc
from streams.control.drift_tracker import DriftTracker
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
from streams.score.triton_client import ModelOutput
from tonewatch.core.settings import Settings
from tonewatch.perf.workload import bench_messages

BATCH = 2048  # what every pipeline-only batch holds (benchmarks/README.md)
SENTIMENT = ("negative", "neutral", "positive")
TOPICS = tuple(f"topic-{i}" for i in range(20))  # the topic model's 20 classes


class _Reader:
    def __init__(self, batches: list[Records], settings: Settings) -> None:
        self.batches, self.settings = batches, settings

    async def start(self, on_revoke: Any) -> None: ...
    async def stop(self) -> None: ...

    async def read(self) -> Batch:
        return parse_batch(self.batches.pop(0), self.settings.scoring) if self.batches else {}

    async def lags(self) -> dict[tuple[str, int], int]:
        return {}

    def assigned(self) -> list[str]:
        return ["news-0"]

    def inputs(self) -> list[str]:
        return ["news-0"]

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    async def seek_to_committed(self) -> None: ...


class _Producer:
    """aiokafka's own record batches, built and closed as the real producer would; nothing sent. Transactions
    (the default guarantee, exactly-once) cost nothing here: they are the broker's round trips."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def begin_transaction(self) -> None: ...
    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(4))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(256 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[None]:
        batch._builder.build()  # the bytes the broker would get
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Triton:
    def __init__(self, settings: Settings) -> None:
        self.models = (settings.triton.sentiment_model, settings.triton.topic_model)
        self.rng = np.random.default_rng(0)

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def score(self, texts: Any, keys: Any, routes: Any) -> dict[str, ModelOutput]:
        n = len(texts)
        return {name: ModelOutput(self.rng.dirichlet(np.ones(len(labels)), n).astype(np.float32), labels, ("1",) * n)
                for name, labels in zip(self.models, (SENTIMENT, TOPICS), strict=True)}


class _Follower:
    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def routes(self) -> dict[str, Any]:
        return {}


def _records(n: int, chat: float) -> list[Records]:
    msgs = bench_messages(n, f"path-{time.time_ns()}")
    every = round(1 / chat) if chat > 0 else 0
    for i, m in enumerate(msgs):
        if every and i % every == 0:  # chat text with what the masker looks for
            m.update(source="chat", text=f"{m['text']} call 555-123-4567 @desk $TSLA")
    raws = [json.dumps(m).encode() for m in msgs]
    tp = TopicPartition("news", 0)
    return [{tp: [ConsumerRecord("news", 0, s + j, 0, 0, None, v, None, 0, len(v), []) for j, v in
                  enumerate(raws[s:s + BATCH])]} for s in range(0, n, BATCH)]


async def _drain(batches: list[Records]) -> float:
    settings = Settings().updated(scoring__concurrency=2)
    metrics = create_metrics()
    reader = _Reader(batches, settings)
    scorer = Scorer(_Triton(settings), _Follower(), (settings.triton.sentiment_model, settings.triton.topic_model),
                    load_knowledge(), metrics, settings.scoring.max_tickers)
    publisher = Publisher(settings, metrics, DriftTracker(settings, metrics), producer=_Producer)
    clock = PartitionClock(settings.detector.allowed_lateness_s, settings.detector.idle_s)
    stage = ScoreStage(reader, Aligner(reader), scorer, publisher, Committer(InTransaction(reader, clock), 2),
                       RecentIds(settings.scoring.dedup_capacity), metrics, clock)
    await publisher.start()
    steps = len(batches)
    started = time.perf_counter()
    for _ in range(steps):
        await stage.step()
    await stage.committer.drain()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40 * BATCH)
    parser.add_argument("--chat", type=float, default=0.0, help="share of messages sent as chat (0-1)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tune_gc()  # as the worker does
    rates = []
    for run in range(args.runs):
        seconds = asyncio.run(_drain(_records(args.messages, args.chat)))
        rates.append(args.messages / seconds)
        print(json.dumps({"run": run + 1, "messages": args.messages, "seconds": round(seconds, 3),
                          "msgs_per_s": round(rates[-1])}))
    print(json.dumps({"median_msgs_per_s": round(statistics.median(rates)), "chat_share": args.chat}))


if __name__ == "__main__":
    main()
