"""The sink loop (tonewatch/store/sink.py) with a fake consumer, connection and writer: offsets move only after the
database commit, a failed write is retried with the same rows, bad records are dead-lettered."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, NamedTuple

import psycopg
import pytest

from tests.fakes import FakeClock
from tonewatch.core.service_sections import StoreSettings
from tonewatch.store.errors import StoreError
from tonewatch.store.sink import Sink, create_sink_metrics

TRENDS, ALERTS, SCORED = "p.trends", "p.alerts", "p.scored"
KINDS = {TRENDS: "trends", ALERTS: "alerts", SCORED: "scored"}


class TP(NamedTuple):  # as kafka.structs.TopicPartition
    topic: str
    partition: int


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def trend(key: str = "TSLA") -> bytes:
    return json.dumps({"dimension": "ticker", "key": key, "window_start": "2026-01-05T10:00:00Z",
                       "window_end": "2026-01-05T10:01:00Z", "count": 10, "negative": 7}).encode()


def alert(aid: str = "a1") -> bytes:
    return json.dumps({"id": aid, "status": "firing", "dimension": "ticker", "key": "TSLA", "severity": "critical",
                       "reason": "both", "score": 5.0,
                       "window": {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:01:00Z"}}).encode()


class FakeConsumer:
    """Hands out the scripted polls in order, then nothing (time passes as in a real poll's wait)."""

    def __init__(self, clock: FakeClock, events: list[str], *polls: list[Rec], high: int = 100) -> None:
        self.clock, self.events, self.polls, self.high = clock, events, list(polls), high
        self.commits: list[dict[Any, int]] = []
        self.positions: dict[TP, int] = {}  # as a real consumer's: past the records returned and any markers

    def poll(self, timeout_ms: int, max_records: int) -> dict[TP, list[Rec]]:
        if not self.polls:
            self.clock.now += timeout_ms / 1000
            return {}
        out: dict[TP, list[Rec]] = {}
        for r in self.polls.pop(0)[:max_records]:
            tp = TP(r.topic, r.partition)
            out.setdefault(tp, []).append(r)
            self.positions[tp] = max(self.positions.get(tp, 0), r.offset + 1)
        return out

    def assignment(self) -> set[TP]:
        return set(self.positions)

    def commit(self, offsets: Mapping[Any, Any]) -> None:
        self.events.append("commit")
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def highwater(self, tp: TP) -> int:
        return self.high

    def position(self, tp: TP, timeout_ms: int) -> int | None:
        return self.positions.get(tp)


class FakeWriter:
    """Fails the first ``failures`` writes as a database outage; ``refuse`` rows fail as PostgreSQL refusing them."""

    def __init__(self, clock: FakeClock, events: list[str], failures: int = 0, refuse: Sequence[Any] = ()) -> None:
        self.clock, self.events, self.failures, self.refuse = clock, events, failures, refuse
        self.times: list[float] = []
        self.attempts: list[dict[str, list[tuple[Any, ...]]]] = []
        self.written: dict[str, list[tuple[Any, ...]]] = {}

    def __call__(self, conn: Any) -> FakeWriter:
        assert not conn.closed, "a write on a closed connection"
        return self

    def write(self, rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]:
        self.attempts.append({k: list(v) for k, v in rows.items()})
        self.times.append(self.clock.now)
        self.events.append("write")
        if self.failures:
            self.failures -= 1
            raise StoreError("writing failed: OperationalError") from psycopg.OperationalError("server closed")
        if any(row[1] in self.refuse for rs in rows.values() for row in rs):
            raise StoreError("writing failed: DataError") from psycopg.DataError("refused")
        for kind, rs in rows.items():
            self.written.setdefault(kind, []).extend(rs)
        return {kind: len(rs) for kind, rs in rows.items()}


class Conn:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, *polls: list[Rec], failures: int = 0, refuse: Sequence[Any] = (), **store: Any) -> None:
        self.events: list[str] = []
        self.clock = FakeClock(1000.0)
        self.consumer = FakeConsumer(self.clock, self.events, *polls)
        self.writer = FakeWriter(self.clock, self.events, failures, refuse)
        self.conns: list[Conn] = []
        self.dead: list[dict[str, Any]] = []
        self.expired: list[date] = []
        self.metrics = create_sink_metrics()
        self.sink = Sink(self.consumer, self.connect, self.dead_letters, self.metrics,
                         StoreSettings(batch_timeout_s=1.0, **store), KINDS, writer=self.writer,
                         expire=self.expire, clock=self.clock, sleep=self.clock.sleep, today=lambda: date(2026, 1, 31))

    def connect(self) -> Conn:
        self.conns.append(Conn())
        return self.conns[-1]

    def dead_letters(self, letters: list[tuple[bytes, bytes]]) -> None:
        self.events.append("dead-letters")
        self.dead += [json.loads(v) for _, v in letters]

    def expire(self, conn: Any, before: date) -> list[str]:
        self.expired.append(before)
        return []

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def test_offsets_are_committed_only_after_the_rows_are_written() -> None:
    h = Harness([Rec(TRENDS, 0, 7, b"k", trend()), Rec(ALERTS, 1, 3, b"a1", alert())])
    h.sink.step(lambda: False)
    assert h.events == ["write", "commit"]
    assert h.consumer.commits == [{TP(TRENDS, 0): 8, TP(ALERTS, 1): 4}]  # the next offset to read
    assert set(h.writer.written) == {"trends", "alerts"}
    assert h.sample("tonewatch_sink_rows_total", kind="trends") == 1
    assert h.sample("tonewatch_sink_lag", topic=ALERTS, partition="1") == 100 - 4


def test_run_reads_the_next_batch_while_one_is_written_and_commits_each_only_as_far_as_it_read() -> None:
    """run() writes a batch on a thread of its own while it reads the next one: the consumer's position is then
    past records not yet written, so a batch's offsets must be where that batch ended, not the position."""
    h = Harness([Rec(TRENDS, 0, 0, None, trend("A"))], [Rec(TRENDS, 0, 1, None, trend("B"))], batch_records=1)
    second_read, overlapped = threading.Event(), []
    poll, write = h.consumer.poll, h.writer.write

    def watched_poll(**kwargs: Any) -> dict[TP, list[Rec]]:
        polled = poll(**kwargs)
        if any(r.offset == 1 for records in polled.values() for r in records):
            second_read.set()
        return polled

    def first_write_waits_for_the_second_read(rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]:
        if not overlapped:
            overlapped.append(second_read.wait(5))
        return write(rows)

    h.consumer.poll = watched_poll  # type: ignore[method-assign]
    h.writer.write = first_write_waits_for_the_second_read  # type: ignore[method-assign]
    h.sink.run(lambda: len(h.consumer.commits) >= 2)
    assert overlapped == [True]
    assert h.consumer.commits == [{TP(TRENDS, 0): 1}, {TP(TRENDS, 0): 2}]
    assert [r[1] for r in h.writer.written["trends"]] == ["A", "B"]


def test_run_starts_the_next_write_before_it_commits_the_last_batchs_offsets() -> None:
    """An offset commit is a round trip to the broker: made while the next batch is written, the database does
    not wait for it. The offsets still follow their own batch's database commit, in the order read."""
    h = Harness([Rec(TRENDS, 0, 0, None, trend("A"))], [Rec(TRENDS, 0, 1, None, trend("B"))], batch_records=1)
    second_write, overlapped = threading.Event(), []
    commit, write = h.consumer.commit, h.writer.write

    def second_starts(rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]:
        if h.writer.attempts:
            second_write.set()
        return write(rows)

    def first_commit_waits_for_the_second_write(offsets: Mapping[Any, Any]) -> None:
        if not overlapped:
            overlapped.append(second_write.wait(5))
        commit(offsets)

    h.writer.write = second_starts  # type: ignore[method-assign]
    h.consumer.commit = first_commit_waits_for_the_second_write  # type: ignore[method-assign]
    h.sink.run(lambda: len(h.consumer.commits) >= 2)
    assert overlapped == [True]
    assert h.consumer.commits == [{TP(TRENDS, 0): 1}, {TP(TRENDS, 0): 2}]


def test_a_batch_holds_every_record_polled_until_the_timeout() -> None:
    """Two polls, one transaction: a sink that wrote each poll would show two writes."""
    h = Harness([Rec(TRENDS, 0, 0, None, trend("A"))], [Rec(TRENDS, 0, 1, None, trend("B"))])
    h.sink.step(lambda: False)
    assert h.events == ["write", "commit"] and len(h.writer.written["trends"]) == 2


def test_run_ships_what_it_has_once_the_writer_is_free_instead_of_waiting_out_the_timeout() -> None:
    """The end of a backlog, or a quiet topic: one record and nothing behind it is written at once, not a
    batch timeout later (run only; step keeps filling until the timeout, as the test above shows)."""
    h = Harness([Rec(TRENDS, 0, 0, None, trend("A"))])
    h.sink.run(lambda: len(h.consumer.commits) >= 1)
    assert h.writer.times == [1000.0]


def test_run_keeps_filling_a_batch_while_the_writer_is_busy() -> None:
    """Natural batching: records that arrive while a write is in flight join the next batch, not one each (a
    sink that shipped whenever a poll came back empty would write 1, 1, 1, 1)."""
    polls = [[Rec(TRENDS, 0, i, None, trend(f"K{i}"))] for i in range(4)]
    h = Harness(*polls)
    writing, sizes, write, poll = threading.Event(), [], h.writer.write, h.consumer.poll

    def arriving(timeout_ms: int, max_records: int) -> dict[TP, list[Rec]]:
        if len(h.consumer.polls) < 4 and not writing.is_set():
            h.clock.now += timeout_ms / 1000
            return {}  # records 1-3 arrive only once the first write has begun
        return poll(timeout_ms=timeout_ms, max_records=max_records)

    def slow_first(rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]:
        sizes.append(sum(map(len, rows.values())))
        writing.set()
        while len(sizes) == 1 and h.consumer.polls:  # the other three are polled while this write is in flight
            threading.Event().wait(0.001)
        return write(rows)

    h.consumer.poll = arriving  # type: ignore[method-assign]
    h.writer.write = slow_first  # type: ignore[method-assign]
    h.sink.run(lambda: sum(sizes) >= 4 and len(h.consumer.commits) >= len(sizes))
    assert sizes == [1, 3]


def test_a_failed_write_is_retried_with_the_same_rows_and_nothing_is_committed_until_it_succeeds() -> None:
    h = Harness([Rec(TRENDS, 0, 0, None, trend()), Rec(ALERTS, 0, 0, None, alert())], failures=3)
    h.sink.step(lambda: False)
    assert h.events == ["write"] * 4 + ["commit"]
    assert all(a == h.writer.attempts[0] for a in h.writer.attempts)
    assert h.consumer.commits == [{TP(TRENDS, 0): 1, TP(ALERTS, 0): 1}]
    assert [c.closed for c in h.conns] == [True, True, True, False]  # a fresh connection for each try
    assert sum(h.clock.slept) == pytest.approx(1 + 2 + 4)  # backing off, doubling
    assert h.sample("tonewatch_sink_errors_total", reason="database") == 3


def test_the_backoff_is_capped_at_30_seconds() -> None:
    h = Harness([Rec(TRENDS, 0, 0, None, trend())], failures=8)
    h.sink.step(lambda: False)
    tries = h.writer.times
    assert [b - a for a, b in itertools.pairwise(tries)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_stop_while_the_database_is_down_commits_nothing() -> None:
    h = Harness([Rec(TRENDS, 0, 0, None, trend())], failures=1000)
    h.sink.run(lambda: h.clock.now > 1100)
    assert "write" in h.events and "commit" not in h.events
    assert h.conns and all(c.closed for c in h.conns)


def test_bad_json_and_invalid_records_are_dead_lettered_and_the_rest_written() -> None:
    h = Harness([Rec(TRENDS, 0, 0, b"k0", b"{not json"), Rec(TRENDS, 0, 1, None, trend("OK")),
                 Rec(ALERTS, 0, 5, b"k2", json.dumps({"id": "a9"}).encode()), Rec(ALERTS, 0, 6, None, b"[1, 2]"),
                 Rec(SCORED, 2, 9, None, None), Rec(ALERTS, 0, 7, None, alert("a2"))])
    h.sink.step(lambda: False)
    assert h.events == ["write", "dead-letters", "commit"]
    assert [r[1] for r in h.writer.written["trends"]] == ["OK"] and len(h.writer.written["alerts"]) == 1
    where = [(d["topic"], d["partition"], d["offset"]) for d in h.dead]
    assert where == [(TRENDS, 0, 0), (ALERTS, 0, 5), (ALERTS, 0, 6), (SCORED, 2, 9)]
    assert {d["stage"] for d in h.dead} == {"sink"}
    reasons = [d["reason"] for d in h.dead]
    assert "not JSON" in reasons[0] and "status" in reasons[1] and "object" in reasons[2] and "empty" in reasons[3]
    assert h.dead[0]["payload"] == "{not json"
    assert h.consumer.commits == [{TP(TRENDS, 0): 2, TP(ALERTS, 0): 8, TP(SCORED, 2): 10}]
    assert h.sample("tonewatch_sink_errors_total", reason="invalid") == 4


def test_a_batch_of_only_bad_records_is_dead_lettered_and_committed() -> None:
    h = Harness([Rec(TRENDS, 0, 4, None, b"\xff\xfe")])
    h.sink.step(lambda: False)
    assert h.events == ["dead-letters", "commit"] and h.dead[0]["payload"] is None  # not UTF-8: withheld


def test_a_row_the_database_refuses_is_dead_lettered_and_the_others_written() -> None:
    """A refused row (DataError) is not an outage: retrying the batch forever would stop the sink for good."""
    h = Harness([Rec(TRENDS, 0, 0, None, trend("A")), Rec(TRENDS, 0, 1, None, trend("BAD")),
                 Rec(TRENDS, 0, 2, None, trend("C"))], refuse=["BAD"])
    h.sink.step(lambda: False)
    assert [r[1] for r in h.writer.written["trends"]] == ["A", "C"]
    refused = "trends record: the database refused the row (DataError)"
    assert [(d["offset"], d["reason"]) for d in h.dead] == [(1, refused)]
    assert h.events[-2:] == ["dead-letters", "commit"] and h.consumer.commits == [{TP(TRENDS, 0): 3}]


def test_offsets_stay_put_when_the_dead_letters_cannot_be_sent() -> None:
    h = Harness([Rec(TRENDS, 0, 0, None, b"nope")])

    def down(letters: list[tuple[bytes, bytes]]) -> None:
        raise ConnectionError("broker gone")

    h.sink.dead_letters = down
    with pytest.raises(ConnectionError):
        h.sink.step(lambda: False)
    assert h.consumer.commits == []


def test_a_stop_finishes_the_batch_in_hand() -> None:
    h = Harness([Rec(TRENDS, 0, 0, None, trend())], [Rec(TRENDS, 0, 1, None, trend("B"))])
    polls = iter([False, False, True])
    h.sink.run(lambda: next(polls, True))
    assert h.events == ["write", "commit"] and h.consumer.commits == [{TP(TRENDS, 0): 1}]


def test_retention_runs_at_the_start_and_then_hourly() -> None:
    h = Harness(retention_days=30)
    h.sink.step(lambda: False)
    h.sink.step(lambda: False)
    assert h.expired == [date(2026, 1, 1)]
    h.clock.now += 3600
    h.sink.step(lambda: False)
    assert h.expired == [date(2026, 1, 1)] * 2


def test_transaction_markers_after_the_last_record_are_committed_too_so_the_lag_reaches_zero() -> None:
    """The worker writes scored records in transactions: a partition ends with a commit marker, which holds no
    record. Committing the last record's offset + 1 would leave the group one behind on every such partition for
    ever (the lag gauge never 0, a caught-up check never true)."""
    h = Harness([Rec(SCORED, 0, 0, None, None), Rec(SCORED, 0, 1, None, None)])
    h.consumer.high = 3  # records at 0 and 1, the transaction's marker at 2
    h.consumer.polls.append([])  # the next fetch returns only the marker: the position moves past it
    h.sink.step(lambda: False)
    h.consumer.positions[TP(SCORED, 0)] = 3
    h.sink.step(lambda: False)  # nothing new to write, but the position moved
    assert h.consumer.commits[-1] == {TP(SCORED, 0): 3}
    assert h.sample("tonewatch_sink_lag", topic=SCORED, partition="0") == 0
