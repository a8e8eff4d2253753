"""The score stage's outputs: a batch's scored records, trend partials, drift events and dead letters,
collected in an :class:`~streams.score.outbox.Outbox` and delivered, whole, until the broker has them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Mapping, Set
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.control.drift_tracker import DriftTracker, event_time
from streams.errors import input_dead_letter
from streams.metrics import PipelineMetrics
from streams.records import Message, Scored
from streams.score.outbox import MAX_RECORD_BYTES, Outbox, fits, partition_for
from streams.windows.detector import Partial
from streams.windows.fold import encode_marks, pack_partials
from streams.windows.trends import Combiner
from streams.windows.watermark import Mark
from tonewatch.core.errors import ServiceError
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.sections import KafkaSettings
from tonewatch.core.settings import Settings
from tonewatch.core.topics import NAMES

log = logging.getLogger(__name__)
CommitOffsets = dict[Any, tuple[int, str]]  # per input partition: next offset and its commit metadata


def dumps(obj: Any) -> bytes:
    """A JSON record value (datetimes as strings), for the records the worker writes outside the hot path."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def transactional_id(kafka: KafkaSettings) -> str:
    """The configured id, else one per process: two workers on one host must never fence each other."""
    return kafka.transactional_id or f"{kafka.score_group_id}-{socket.gethostname()}-{os.getpid()}"


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """The stage's producer: every output acknowledged by all replicas before its batch commits, and with
    exactly-once, a batch's outputs and input offsets in one transaction."""
    kafka = settings.kafka
    txn: dict[str, Any] = {}
    if kafka.processing_guarantee == "exactly_once":
        txn = {"transactional_id": transactional_id(kafka),
               "transaction_timeout_ms": int(kafka.transaction_timeout_s * 1000)}
    return AIOKafkaProducer(**aiokafka_config(kafka), acks="all", max_batch_size=256 * 1024, linger_ms=5, **txn)


# what a dead letter keeps of its input (masked): enough to see what was wrong; the record is at its offset
REFUSALS_TO_STOP = 3  # non-retriable produce errors in a row (a fresh producer between): the worker stops


class ProduceRefused(ServiceError):
    """The broker refuses the stage's records for good (authorization, record size): no retry can help."""


def _release(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


class Publisher:
    """Builds and produces a batch's output records; ``producer`` makes the (not yet started) producer."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics, drift: DriftTracker,
                 producer: Callable[[], Any], adjust: Callable[[Scored], float] | None = None) -> None:
        self.settings, self.metrics, self.drift = settings, metrics, drift
        self.adjust = adjust  # a message's corrected negative count (streams/score/rates.py); None: its label
        self._make_producer = producer
        self.producer: Any = None
        self.partitions: dict[str, list[int]] = {}  # per output topic: partitions records are keyed onto

    async def start(self) -> None:
        self.producer = self._make_producer()
        await self.producer.start()
        for short in NAMES:
            topic = self.settings.kafka.topic(short)
            self.partitions[topic] = sorted(await self.producer.partitions_for(topic))

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def outbox(self) -> Outbox:
        return Outbox(self.partitions)

    def dead_letter(self, out: Outbox, reason: str, r: Any, stage: str) -> None:
        """Input record ``r`` with the reason it produced no output, keyed as it came; its personal data masked."""
        self.metrics.dead_letter.labels(stage).inc()
        out.add(self.settings.kafka.topic("dead-letter"), r.key or b"", dumps(input_dead_letter(reason, r, stage)))

    def add_scored(self, out: Outbox, valid: list[tuple[Any, Message]], scored: list[Scored | str],
                   late: Set[str] = frozenset()) -> None:
        """Each scored record, then the batch's drift events, then its trend partials per partition; a late
        message is scored but dead-lettered instead of counted."""
        combiner = Combiner(self.settings.detector.window_s, self.settings.detector.top_messages, adjust=self.adjust)
        sources: Counter[str] = Counter()
        records: list[tuple[bytes, bytes]] = []  # the scored topic's, keyed by id
        lateness = self.settings.detector.allowed_lateness_s
        for (r, _), sc in zip(valid, scored, strict=True):
            if isinstance(sc, str):  # no usable model output for this message
                self.dead_letter(out, sc, r, "score")
                continue
            try:
                key, value = sc.id.encode(), sc.to_json()
                if not fits(key, value):
                    self.dead_letter(out, f"its scored record would be {len(value)} bytes, over the "
                                     f"{MAX_RECORD_BYTES} a Kafka record may hold", r, "score")
                    continue
                if sc.id in late:
                    self.dead_letter(out, f"later than allowed lateness ({lateness}s) behind its partition's "
                                     "event time: scored, not counted", r, "late")
                else:
                    combiner.add(sc)
            except Exception as exc:  # a bug in building one output: that message goes, the batch stays
                self.dead_letter(out, f"output failed: {exc}", r, "score")
                continue
            records.append((key, value))
            sources[sc.source] += 1
        out.add_many(self.settings.kafka.topic("scored"), records)
        for d in self.drift.observe([sc for sc in scored if not isinstance(sc, str)]):
            log.warning("drift: %s v%s %s PSI %.3f", d.model, d.version, d.kind, d.psi)
            out.add(self.settings.kafka.topic("model-events"), d.model.encode(), dumps(d.as_dict(event_time())))
        for source, n in sources.items():
            self.metrics.scored.labels(source).inc(n)
        self._add_partials(out, combiner)

    def _add_partials(self, out: Outbox, combiner: Combiner) -> None:
        # per partition, one record of all its keys' partials (streams/windows/fold.py); a key's partition is the
        # one a record keyed by it would get, so the windows agent's table stays co-partitioned
        trend_topic = self.settings.kafka.topic("trend-events")
        by_partition: dict[int, list[Partial]] = {}
        for key, partials in combiner.partials().items():
            by_partition.setdefault(partition_for(key.encode(), self.partitions[trend_topic]), []).extend(partials)
        for partition, partials in by_partition.items():
            for value in pack_partials(partials):
                out.add_to(trend_topic, partition, value)

    def add_marks(self, out: Outbox, marks: Mapping[str, Mark], inputs: list[str]) -> None:
        """The stage's input partitions' progress, after this batch's partials, on every trend partition."""
        trend_topic = self.settings.kafka.topic("trend-events")
        value = encode_marks(marks, inputs)
        for partition in self.partitions.get(trend_topic, []):
            out.add_to(trend_topic, partition, value)

    @property
    def transactional(self) -> bool:
        return self.settings.kafka.processing_guarantee == "exactly_once"

    async def deliver(self, out: Outbox, turn: asyncio.Future[None], offsets: CommitOffsets | None = None) -> None:
        """Until the broker has every record: a batch whose outputs are lost must not be committed.

        ``turn`` is resolved once the next batch may follow: when the records are handed to the producer, or
        with exactly-once, when their transaction, which also commits ``offsets``, is committed.
        """
        assert self.producer is not None, "Publisher.start() was not awaited"
        delay, refusals = 0.5, 0
        while True:
            try:
                if self.transactional:
                    await self._transact(out, offsets or {})
                    _release(turn)
                    return
                futures = await out.enqueue(self.producer)
                _release(turn)
                await asyncio.gather(*futures)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                refusals = refusals + 1 if not getattr(exc, "retriable", True) else 0
                if refusals >= REFUSALS_TO_STOP:  # the same answer every time: retrying would stall silently
                    raise ProduceRefused(f"the broker refuses this worker's records ({exc!r}); stopping: check "
                                         "the topics' ACLs and max.message.bytes") from exc
                log.warning("delivering %d records failed (%r); retrying in %.1fs", len(out), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _transact(self, out: Outbox, offsets: CommitOffsets) -> None:
        """One transaction: the records, then the input offsets (with their partition times), committed."""
        await self.producer.begin_transaction()
        try:
            futures = await out.enqueue(self.producer)
            if offsets:
                await self.producer.send_offsets_to_transaction(offsets, self.settings.kafka.score_group_id)
            await self.producer.commit_transaction()
        except BaseException:  # cancelled too: an open transaction would block the next one
            await self._abort()
            raise
        await asyncio.gather(*futures)

    async def _abort(self) -> None:
        """Abort the open transaction; a producer that cannot (fenced, or in a fatal state) is replaced."""
        try:
            await self.producer.abort_transaction()
        except Exception as exc:
            log.warning("aborting a transaction failed (%s): starting a new producer", exc)
            self.metrics.producer_restarts.inc()
            old, self.producer = self.producer, self._make_producer()
            with contextlib.suppress(Exception):
                await old.stop()
            await self.producer.start()
