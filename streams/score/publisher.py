"""The score stage's outputs: a batch's scored records, trend partials, drift events and dead letters,
collected in an :class:`~streams.score.outbox.Outbox` and delivered, whole, until the broker has them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Set
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.control.drift_tracker import DriftTracker, event_time
from streams.errors import dead_letter_record
from streams.metrics import PipelineMetrics
from streams.records import Message, Scored
from streams.score.outbox import Outbox, partition_for
from streams.windows.detector import Partial
from streams.windows.fold import encode_marks, pack_partials
from streams.windows.trends import Combiner
from streams.windows.watermark import Mark
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings
from tonewatch.core.topics import NAMES

log = logging.getLogger(__name__)


def dumps(obj: Any) -> bytes:
    """A JSON record value (datetimes as strings), for the records the worker writes outside the hot path."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """The stage's producer: every output acknowledged by all replicas before its batch commits."""
    return AIOKafkaProducer(**aiokafka_config(settings.kafka), acks="all", max_batch_size=256 * 1024, linger_ms=5)


class Publisher:
    """Builds and produces a batch's output records; ``producer`` makes the (not yet started) producer."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics, drift: DriftTracker,
                 producer: Callable[[], Any]) -> None:
        self.settings, self.metrics, self.drift = settings, metrics, drift
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
        """Input record ``r`` with the reason it produced no output, keyed as it came."""
        self.metrics.dead_letter.labels(stage).inc()
        record = dead_letter_record(reason, r.value, stage=stage, topic=r.topic, partition=r.partition,
                                    offset=r.offset)
        out.add(self.settings.kafka.topic("dead-letter"), r.key or b"", dumps(record))

    def add_scored(self, out: Outbox, valid: list[tuple[Any, Message]], scored: list[Scored | str],
                   late: Set[str] = frozenset()) -> None:
        """Each scored record, then the batch's drift events, then its trend partials per partition; a late
        message is scored but dead-lettered instead of counted."""
        combiner = Combiner(self.settings.detector.window_s, self.settings.detector.top_messages)
        sources: Counter[str] = Counter()
        scored_topic = self.settings.kafka.topic("scored")
        lateness = self.settings.detector.allowed_lateness_s
        for (r, _), sc in zip(valid, scored, strict=True):
            if isinstance(sc, str):  # no usable model output for this message
                self.dead_letter(out, sc, r, "score")
                continue
            try:
                value = sc.to_json()
                if sc.id in late:
                    self.dead_letter(out, f"later than allowed lateness ({lateness}s) behind its partition's "
                                     "event time: scored, not counted", r, "late")
                else:
                    combiner.add(sc)
            except Exception as exc:  # a bug in building one output: that message goes, the batch stays
                self.dead_letter(out, f"output failed: {exc}", r, "score")
                continue
            out.add(scored_topic, sc.id.encode(), value)
            sources[sc.source] += 1
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

    async def deliver(self, out: Outbox, turn: asyncio.Future[None]) -> None:
        """Until the broker has every record: a batch whose outputs are lost must not be committed.

        ``turn`` is resolved once the records are handed to the producer, so the next batch may follow.
        """
        assert self.producer is not None, "Publisher.start() was not awaited"
        delay = 0.5
        while True:
            try:
                futures = await out.enqueue(self.producer)
                if not turn.done():
                    turn.set_result(None)
                await asyncio.gather(*futures)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivering %d records failed (%s); retrying in %.1fs", len(out), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
