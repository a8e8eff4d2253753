"""The sink bench's pure parts: its records become store rows, its rate, and when its consumer is caught up."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kafka.structs import OffsetAndMetadata, TopicPartition

from tonewatch.perf.sink_bench import SCORED_PER_TREND, TimedConsumer, rows_per_s, sink_records
from tonewatch.store.rows import to_row


def test_records_become_distinct_rows_of_their_tables() -> None:
    records = sink_records(200, "r1", datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC))
    assert len(records["scored"]) == 200 and len(records["trends"]) == 200 // SCORED_PER_TREND
    scored = [to_row("scored", json.loads(v)) for v in records["scored"]]
    trends = [to_row("trends", json.loads(v)) for v in records["trends"]]
    assert len({(r[1], r[0]) for r in scored}) == 200  # the messages' key (ts, id): 200 rows, none upserted away
    assert len({r[:3] for r in trends}) == len(trends)  # (dimension, key, window_start)
    assert {r[4] for r in scored} == {"negative", "neutral", "positive"}


def test_a_second_run_writes_new_rows_not_upserts() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    first, second = sink_records(40, "a", now), sink_records(40, "b", now)
    assert not {json.loads(v)["id"] for v in first["scored"]} & {json.loads(v)["id"] for v in second["scored"]}
    assert not {json.loads(v)["key"] for v in first["trends"]} & {json.loads(v)["key"] for v in second["trends"]}


def test_rate() -> None:
    assert rows_per_s(5000, 2.0) == 2500.0
    assert rows_per_s(1, 3.0) == 0.3
    assert rows_per_s(0, 0.0) == 0.0


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def poll(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        return {TopicPartition("s", 0): [object()]}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return 7


def test_caught_up_only_when_every_topics_partitions_sum_to_its_records() -> None:
    fake = FakeConsumer()
    timed = TimedConsumer(fake, {"s": 10, "t": 2})
    assert timed.poll(timeout_ms=1) and timed.first is not None
    timed.commit({TopicPartition("s", 0): OffsetAndMetadata(6, "", -1)})
    timed.commit({TopicPartition("s", 1): OffsetAndMetadata(4, "", -1)})
    assert not timed.done.is_set()  # "t" has nothing committed yet
    timed.commit({TopicPartition("s", 0): OffsetAndMetadata(6, "", -1),
                  TopicPartition("t", 0): OffsetAndMetadata(2, "", -1)})
    assert timed.done.is_set() and timed.finished is not None
    assert len(fake.commits) == 3 and timed.highwater(TopicPartition("s", 0)) == 7  # passed through
