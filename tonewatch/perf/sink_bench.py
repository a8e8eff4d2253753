"""``sink_rows_per_s`` of ``tonewatch bench``: the history-store sink alone, working off a backlog into PostgreSQL.

Scored records (and one trends record per :data:`SCORED_PER_TREND` of them) wait on fresh topics; the real
:class:`~tonewatch.store.sink.Sink`, with its own consumer group, Kafka consumer and PostgreSQL connection, then
reads them from the start. The clock runs from the first poll that brings records to the offset commit that takes
the group to the end of every topic: the group's join is not counted, the last batch's database commit is.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from kafka.structs import TopicPartition

from models.labels import SENTIMENT, TOPIC
from streams.records import Scored
from streams.windows.detector import ClosedWindow, Window, window_start
from streams.windows.trends import trend_record
from tonewatch.core.kafka_io import ensure_topics, producer
from tonewatch.core.settings import Settings
from tonewatch.perf.workload import bench_messages
from tonewatch.store.handoff import quick_handoff
from tonewatch.store.schema import migrate
from tonewatch.store.sink import Sink, create_sink_metrics, kafka_dead_letters, sink_consumer, topic_kinds

# A minute's window of one key sums every message of that key: at the pipeline's thousands of messages a second
# trend records are well under 1 % of scored ones. One in 20 errs towards more rows of the wider kind.
SCORED_PER_TREND = 20
TICKERS = ("AAPL", "TSLA", "NVDA", "AMZN", "MSFT", "META", "JPM", "XOM", "PFE", "BA")
WINDOW_S = 60


def sink_records(n: int, run: str, now: datetime) -> dict[str, list[bytes]]:
    """``n`` scored records (the bench's headlines, as the worker writes them) and ``n // SCORED_PER_TREND``
    trends records, as JSON values per short topic name."""
    scored = []
    for i, m in enumerate(bench_messages(n, run)):
        p, split = (i % 97) / 100, 0.3 + 0.4 * (i % 2)  # spread over [0, 1): every label occurs
        probs = dict(zip(SENTIMENT, (p, (1 - p) * split, (1 - p) * (1 - split)), strict=True))
        scored.append(Scored(
            id=m["id"], source="news", ts=datetime.fromisoformat(m["ts"]), text=m["text"],
            tickers=(TICKERS[i % len(TICKERS)],), sectors=("Information Technology",),
            sentiment=max(probs, key=probs.__getitem__), sentiment_probs=probs,
            topic=TOPIC[i % len(TOPIC)], topic_probs={t: 1 / len(TOPIC) for t in TOPIC},
            model_versions={"sentiment": "1", "topic": "1"}, scored_at=now, inference_ms=1.0,
        ).to_json())
    start = window_start(now.timestamp(), WINDOW_S)
    trends = []
    for i in range(n // SCORED_PER_TREND):  # distinct (key, window): each is a row of its own, as in the pipeline
        key, back = TICKERS[i % len(TICKERS)], 1 + i // len(TICKERS)
        window = Window(start=start - back * WINDOW_S, count=40, negative=9, p_negative_sum=10.5, adjusted_sum=9.0)
        closed = ClosedWindow(window, baseline=0.2, alerting=False)
        trends.append(trend_record("ticker", f"{key}-{run}", closed, WINDOW_S))
    return {"scored": scored, "trends": [json.dumps(t).encode() for t in trends]}


def rows_per_s(rows: int, seconds: float) -> float:
    """The rate, to one decimal; no time measured (nothing to read) is a rate of 0, not a division by zero."""
    return round(rows / seconds, 1) if seconds > 0 else 0.0


class TimedConsumer:
    """The sink's consumer, watched: when the first records came, and when its commits reached ``ends``
    (records per topic: the producer is not transactional, so offsets end at the record count)."""

    def __init__(self, consumer: Any, ends: Mapping[str, int]) -> None:
        self.consumer, self.ends = consumer, dict(ends)
        self.committed: dict[TopicPartition, int] = {}
        self.first: float | None = None
        self.done = threading.Event()
        self.finished: float | None = None

    def poll(self, **kwargs: Any) -> Any:
        polled = self.consumer.poll(**kwargs)
        if polled and self.first is None:
            self.first = time.monotonic()
        return polled

    def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        self.consumer.commit(offsets)
        self.committed.update({tp: o.offset for tp, o in offsets.items()})
        if self.finished is None and self.caught_up():
            self.finished = time.monotonic()
            self.done.set()

    def caught_up(self) -> bool:
        return all(sum(o for tp, o in self.committed.items() if tp.topic == topic) >= n
                   for topic, n in self.ends.items())

    def __getattr__(self, name: str) -> Any:  # highwater, position, close: the real consumer's
        return getattr(self.consumer, name)


def _produce(settings: Settings, records: Mapping[str, list[bytes]]) -> dict[str, int]:
    """Every record, acknowledged; returns the count per full topic name."""
    prod = producer(settings.kafka)
    try:
        for short, values in records.items():
            for i, value in enumerate(values):
                prod.send(settings.kafka.topic(short), key=str(i).encode(), value=value)
        prod.flush()
    finally:
        prod.close()
    return {settings.kafka.topic(short): len(values) for short, values in records.items() if values}


def measure_sink(settings: Settings, n: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """The sink's rate on ``n`` scored records (plus trends) waiting on fresh topics; ``settings.store.dsn``
    names a running PostgreSQL (its schema is migrated here if need be, as the sink does)."""
    assert settings.store.dsn is not None, "the sink bench needs a store"
    run = uuid.uuid4().hex[:8]
    local = settings.updated(kafka__topic_prefix=f"{settings.kafka.topic_prefix}-s{run}")  # a fresh group too
    kinds = topic_kinds(local.kafka)
    dead_topic = local.kafka.topic("dead-letter")
    ensure_topics(local.kafka, [*kinds, dead_topic])
    ends = _produce(local, sink_records(n, run, datetime.now(UTC)))
    dsn = local.store.dsn.get_secret_value()  # type: ignore[union-attr]
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        migrate(conn)
    metrics = create_sink_metrics()
    consumer, out = TimedConsumer(sink_consumer(local.kafka), ends), producer(local.kafka)
    sink = Sink(consumer, lambda: psycopg.connect(dsn, connect_timeout=10, application_name="tonewatch-sink-bench"),
                kafka_dead_letters(out, dead_topic), metrics, local.store, kinds)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop.is_set,), name="sink-bench", daemon=True)
    with quick_handoff():  # as run_sink
        thread.start()
        try:
            if not consumer.done.wait(timeout_s):
                raise TimeoutError(f"the sink had not committed {ends} records within {timeout_s:.0f}s")
        finally:
            stop.set()
            thread.join(60)
            consumer.close()
            out.close()
    written = {k: int(metrics.registry.get_sample_value("tonewatch_sink_rows_total", {"kind": k}) or 0)
               for k in ("scored", "trends")}
    seconds = (consumer.finished or 0.0) - (consumer.first or 0.0)
    return {"records": sum(ends.values()), "rows": sum(written.values()), "seconds": round(seconds, 2),
            "rows_per_s": rows_per_s(sum(written.values()), seconds),
            "scored_rows_per_s": rows_per_s(written["scored"], seconds), "batch_records": local.store.batch_records}
