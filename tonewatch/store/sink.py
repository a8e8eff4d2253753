"""The ``tonewatch sink`` loop: the output topics into the PostgreSQL history store (issue #30, docs/store.md).

A batch (at most ``store.batch_records`` records, or what ``store.batch_timeout_s`` brings) is decoded, each record
turned into its row, and the rows written in one database transaction; a record that cannot be stored is
dead-lettered with its reason. Offsets are committed only after the database commit and the flushed dead letters,
so a crash reads the batch again and the idempotent upserts change nothing. A database that fails or is down is
retried with the same batch, backing off, until it answers: a stopped PostgreSQL leaves a backlog in Kafka that
drains once it is back, nothing lost and nothing written twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

import psycopg
from kafka.producer import KafkaProducer
from kafka.structs import TopicPartition

from streams.control.rejects import preview
from streams.errors import input_dead_letter
from streams.knowledge import load_sectors
from tonewatch.core.errors import InvalidInput, TonewatchError
from tonewatch.core.kafka_io import ensure_topics, producer
from tonewatch.core.rdkafka import RdConsumer, committing_consumer
from tonewatch.core.sections import KafkaSettings
from tonewatch.core.service_sections import StoreSettings
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INCIDENTS
from tonewatch.store.copy_text import CopyRows
from tonewatch.store.errors import StoreError
from tonewatch.store.fast_rows import scored_row_from_json
from tonewatch.store.handoff import quick_handoff
from tonewatch.store.offsets import Committer
from tonewatch.store.rows import json_object, to_row
from tonewatch.store.schema import drop_expired, migrate, sync_ticker_sectors
from tonewatch.store.sink_metrics import SinkMetrics as SinkMetrics
from tonewatch.store.sink_metrics import create_sink_metrics as create_sink_metrics
from tonewatch.store.writer import COPIED_KINDS, StoreWriter

log = logging.getLogger("tonewatch.sink")
T = TypeVar("T")

# short topic name -> the kind of row its records become
TOPIC_KINDS = {"trends": "trends", "alerts": "alerts", INCIDENTS: "incidents", "scored": "scored",
               "model-events": "model_events"}
STAGE = "sink"
BACKOFF_START_S, BACKOFF_CAP_S = 1.0, 30.0
RETENTION_EVERY_S = 3600.0
EAGER_POLL_S = 0.02  # while a write is in flight, how often a batch in hand asks whether the writer is free
# the database refuses these rows themselves (a NUL in a text, a value out of range): retrying cannot help
REFUSED = (psycopg.DataError, psycopg.IntegrityError)
REFUSAL = (*REFUSED, StoreError)  # what Sink.database raises for a refused row: psycopg's error, or the store's on it

DeadLetters = Callable[[list[tuple[bytes, bytes]]], None]  # sends (key, value) pairs and flushes them, or raises


class Writer(Protocol):
    def write(self, rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> dict[str, int]: ...


def topic_kinds(kafka: KafkaSettings) -> dict[str, str]:
    """Full topic name -> row kind."""
    return {kafka.topic(short): kind for short, kind in TOPIC_KINDS.items()}


def sink_consumer(kafka: KafkaSettings) -> RdConsumer:
    """The sink's own group; it reads only committed records and commits its offsets itself."""
    return committing_consumer(kafka, list(topic_kinds(kafka)), kafka.sink_group_id, **{"fetch.wait.max.ms": 200})


def kafka_dead_letters(producer: KafkaProducer, topic: str, timeout_s: float = 30.0) -> DeadLetters:
    """Sends and waits for each: a dead letter that was not written raises, so the offsets stay put."""
    def send(letters: list[tuple[bytes, bytes]]) -> None:
        futures = [producer.send(topic, key=key, value=value) for key, value in letters]
        producer.flush(timeout_s)
        for fut in futures:
            fut.get(timeout=timeout_s)
    return send


def _utc_today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Batch:
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    sources: list[tuple[str, tuple[Any, ...], Any]] = field(default_factory=list)  # (kind, row, its record)
    dead: list[tuple[bytes, bytes]] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read, per partition
    count: int = 0


class Stopped(TonewatchError):
    """Asked to stop while the database was still failing: the batch in hand is left uncommitted."""


class Sink:
    """The loop; every collaborator comes in here, so tests give it fakes."""

    def __init__(self, consumer: Any, connect: Callable[[], Any], dead_letters: DeadLetters, metrics: SinkMetrics,
                 store: StoreSettings, kinds: Mapping[str, str], *, writer: Callable[[Any], Writer] = StoreWriter,
                 expire: Callable[[Any, date], list[str]] = drop_expired, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, today: Callable[[], date] = _utc_today) -> None:
        self.consumer, self.connect, self.dead_letters = consumer, connect, dead_letters
        self.metrics, self.store, self.kinds = metrics, store, kinds
        self.writer, self.expire, self.clock, self.sleep, self.today = writer, expire, clock, sleep, today
        self.conn: Any = None
        self.offsets = Committer(consumer, metrics.lag)
        self.next_retention = float("-inf")

    def run(self, stop: Callable[[], bool]) -> None:
        """Until ``stop()``; the batch in hand is written and committed first (unless the database is down).
        Unlike :meth:`step`, the next batch is read while the last one is written on a thread of its own (waiting
        on PostgreSQL was half the sink's time); a batch's offsets still wait for its database commit."""
        abandon = threading.Event()  # the loop failed: a write still retrying gives up rather than hold it
        pending: list[tuple[Batch, Future[float]]] = []  # the batch being written, if any
        with ThreadPoolExecutor(1, thread_name_prefix="sink-write") as pool:
            try:
                while not stop():
                    if pending and self.clock() >= self.next_retention:
                        self._settle_all(pending)  # retention needs the connection the write holds
                    if not pending:
                        self.retention(stop)
                    batch = self.collect(stop, lambda: not pending or pending[-1][1].done())
                    if batch.count:
                        pending.append((batch, pool.submit(self.write_rows, batch, lambda: stop() or abandon.is_set())))
                    self._settle_all(pending, keep=1 if batch.count else 0)  # the last one's offsets as this one writes
                    if not batch.count:
                        self.offsets.follow()
                self._settle_all(pending)
            except Stopped:
                log.info("stopped with the database unavailable: the last batch is read again at the next start")
            finally:
                abandon.set()
                for _, write in pending:
                    write.exception()  # its end: the connection is closed below
                self._disconnect()

    def step(self, stop: Callable[[], bool]) -> None:
        self.retention(stop)
        batch = self.collect(stop)
        if batch.count:
            self.flush(batch, stop)
        else:
            self.offsets.follow()

    # --- reading -------------------------------------------------------------------------------
    def collect(self, stop: Callable[[], bool], writer_free: Callable[[], bool] | None = None) -> Batch:
        """A batch, its offsets where it ends (:meth:`Committer.reached`). With ``writer_free`` it goes once the
        writer is free and nothing more waits, growing while a write is in flight (natural batching)."""
        batch = Batch()
        deadline = self.clock() + self.store.batch_timeout_s
        while batch.count < self.store.batch_records and not stop() and (left := deadline - self.clock()) > 0:
            ready = writer_free if batch.count else None  # an empty batch waits for records, not the writer
            free = ready is not None and ready()
            wait = 0.0 if free else left if ready is None else min(left, EAGER_POLL_S)
            polled = self.consumer.poll(timeout_ms=max(0 if free else 1, int(wait * 1000)),
                                        max_records=self.store.batch_records - batch.count)
            if free and not polled:
                break
            for tp, records in polled.items():
                for r in records:
                    self.add(batch, tp, r)
        batch.offsets = self.offsets.reached(batch.offsets)
        return batch

    def add(self, batch: Batch, tp: TopicPartition, r: Any) -> None:
        """The record's row into the batch, or its dead letter: bad input never stops the sink."""
        batch.count += 1
        batch.offsets[tp] = r.offset + 1
        kind = self.kinds[tp.topic]
        row = scored_row_from_json(r.value) if kind == "scored" and isinstance(r.value, bytes) else None
        if row is None:
            try:
                row = to_row(kind, json_object(r.value, kind))
            except InvalidInput as exc:  # its reason names the kind already
                self.reject(batch, r, str(exc))
                return
        if kind not in batch.rows:  # a COPied kind's text is made here, while the last batch is written
            batch.rows[kind] = CopyRows() if kind in COPIED_KINDS else []
        batch.rows[kind].append(row)
        batch.sources.append((kind, row, r))

    def reject(self, batch: Batch, r: Any, reason: str) -> None:
        self.metrics.errors.labels("invalid").inc()
        record = input_dead_letter(reason, r, STAGE)
        batch.dead.append((r.key or b"", json.dumps(record, separators=(",", ":")).encode()))

    # --- writing -------------------------------------------------------------------------------
    def flush(self, batch: Batch, stop: Callable[[], bool]) -> None:
        """Rows, then dead letters, then offsets: each step only once the one before is durable."""
        seconds = self.write_rows(batch, stop)
        self.settle(batch, lambda: seconds)

    def write_rows(self, batch: Batch, stop: Callable[[], bool]) -> float:
        """The batch's rows, committed in the database (refused ones dead-lettered); returns the seconds taken."""
        t0 = self.clock()
        if batch.rows:
            try:
                written = self.database(self._write(batch.rows), stop)
            except REFUSAL:  # only a refused row gets here: find it, write the rest
                written = self.one_by_one(batch, stop)
            for kind, n in written.items():
                self.metrics.rows.labels(kind).inc(n)
        return self.clock() - t0

    def settle(self, batch: Batch, written: Callable[[], float]) -> None:
        """Once ``written()`` returns (the write's seconds, or raises its error): dead letters, then the offsets.
        The batch's time leaves out the wait for the next batch's reading in between."""
        seconds = written()
        t0 = self.clock()
        if batch.dead:
            self.dead_letters(batch.dead)
        self.offsets.commit(batch.offsets)
        self.metrics.batch_seconds.observe(seconds + self.clock() - t0)

    def _settle_all(self, pending: list[tuple[Batch, Future[float]]], keep: int = 0) -> None:
        """The batches in the order read, all but the last ``keep``."""
        while len(pending) > keep:
            batch, write = pending.pop(0)
            self.settle(batch, write.result)

    def one_by_one(self, batch: Batch, stop: Callable[[], bool]) -> dict[str, int]:
        """Each row in a transaction of its own; those the database refuses are dead-lettered."""
        written: dict[str, int] = {}
        for kind, row, r in batch.sources:
            try:
                n = self.database(self._write({kind: [row]}), stop)
            except REFUSAL as exc:
                self.reject(batch, r, f"{kind} record: the database refused the row ({_cause_name(exc)})")
                continue
            for k, count in n.items():
                written[k] = written.get(k, 0) + count
        return written

    def database(self, work: Callable[[Any], T], stop: Callable[[], bool]) -> T:
        """``work(connection)``, retried on a fresh connection with backoff until it succeeds; a row the database
        refuses is raised at once, and a stop while the database is down raises :class:`Stopped`."""
        delay = BACKOFF_START_S
        while True:
            try:
                if self.conn is None:
                    self.conn = self.connect()
                return work(self.conn)
            except (StoreError, psycopg.Error) as exc:
                if _refused(exc):
                    raise
                self.metrics.errors.labels("database").inc()
                log.warning("database failed (%s: %s); retrying in %.0fs", _cause_name(exc),
                            preview(str(exc), 300), delay)
                self._disconnect()
                if self._pause(delay, stop):
                    raise Stopped from exc
                delay = min(delay * 2, BACKOFF_CAP_S)

    def retention(self, stop: Callable[[], bool]) -> None:
        """Drop the partitions past ``store.retention_days``: at the start, then once an hour."""
        if self.clock() < self.next_retention:
            return
        before = self.today() - timedelta(days=self.store.retention_days)
        try:
            dropped = self.database(lambda conn: self.expire(conn, before), stop)
        except REFUSAL as exc:
            log.warning("retention failed (%s); next try in an hour", _cause_name(exc))
            dropped = []
        self.next_retention = self.clock() + RETENTION_EVERY_S
        if dropped:
            log.info("retention: dropped %s (before %s)", ", ".join(dropped), before)

    def _write(self, rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> Callable[[Any], dict[str, int]]:
        return lambda conn: self.writer(conn).write(rows)

    def _pause(self, seconds: float, stop: Callable[[], bool]) -> bool:
        """Sleep in short slices so SIGTERM is not kept waiting; True when asked to stop."""
        end = self.clock() + seconds
        while not stop():
            left = end - self.clock()
            if left <= 0:
                return False
            self.sleep(min(left, 0.5))
        return True

    def _disconnect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception as exc:  # a broken connection may fail to close: it is dropped either way
                log.debug("closing the database connection failed: %s", exc)
            self.conn = None


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, REFUSED) or isinstance(exc.__cause__, REFUSED)


def _cause_name(exc: BaseException) -> str:
    """The error's class and SQLSTATE, not its message: PostgreSQL quotes the refused value in some, and a dead
    letter's reason never quotes the payload."""
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    state = getattr(cause, "sqlstate", None)
    return type(cause).__name__ + (f" {state}" if state else "")


def run_sink(settings: Settings, metrics: SinkMetrics, stop: Callable[[], bool]) -> None:
    """``tonewatch sink``: the topics, a schema migrated and the ticker sectors written on the first connection
    (waiting for the database like any reconnection), then the loop until ``stop()``."""
    assert settings.store.dsn is not None, "the command refuses to start without a store"
    dsn = settings.store.dsn.get_secret_value()
    sectors = load_sectors(settings.scoring.knowledge_path)
    migrated: list[str] = []

    def connect() -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, connect_timeout=10, application_name="tonewatch-sink")
        if not migrated:
            try:
                applied = migrate(conn)
                synced = sync_ticker_sectors(conn, sectors)
            except BaseException:
                conn.close()
                raise
            log.info("store schema ready%s; %d ticker sectors, %d changed",
                     f" (applied {', '.join(applied)})" if applied else "", len(sectors), synced)
            migrated.append("done")
        return conn

    kinds = topic_kinds(settings.kafka)
    dead_topic = settings.kafka.topic("dead-letter")
    ensure_topics(settings.kafka, [*kinds, dead_topic])
    consumer, out = sink_consumer(settings.kafka), producer(settings.kafka)
    try:
        with quick_handoff():
            Sink(consumer, connect, kafka_dead_letters(out, dead_topic), metrics, settings.store, kinds).run(stop)
    finally:
        consumer.close()
        out.close()
