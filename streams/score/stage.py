"""The score stage: news/chat → Triton → scored records and per-key trend events, a batch at a time.

It reads the input topics with its own aiokafka consumer instead of a Faust agent. Faust hands an
agent one record at a time: an event object, an ack and offset bookkeeping per record cost about as
much as everything Tonewatch does with a message, and its commit rule lost records after a kill -9
(streams/score/offsets.py). Here a batch is one ``getmany``, its outputs one produce batch per partition
(streams/score/outbox.py), and its offsets one commit once those outputs are acknowledged:
at-least-once by construction. Batches are scored ``score_concurrency`` at a time and committed in
the order they were read, so a later batch never commits over an earlier one still in flight.

Every per-message failure is dead-lettered with its reason (streams.errors); a failed delivery is
retried, whole, until the broker takes it; nothing here stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from streams.control.drift_tracker import DriftTracker, ReferenceLoader, event_time
from streams.control.model_events import EventFollower
from streams.enrich import extract_tickers, mask_pii
from streams.errors import dead_letter_record
from streams.knowledge import Knowledge
from streams.metrics import PipelineMetrics
from streams.records import InvalidMessage, Message, Scored, parse_message
from streams.score.align import keep_counts
from streams.score.dedup import RecentIds
from streams.score.fetch_wait import FETCH_MAX_WAIT_MS
from streams.score.outbox import Outbox, partition_for
from streams.score.read_size import ReadSize
from streams.score.scoring import TritonScorer
from streams.windows.detector import Partial
from streams.windows.fold import pack_partials
from streams.windows.trends import Combiner
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INPUTS, NAMES

log = logging.getLogger(__name__)

Records = dict[TopicPartition, list[Any]]  # what getmany returns
Batch = dict[TopicPartition, list[tuple[Any, "Message | str"]]]  # each record parsed, or why it is invalid
LAGGING_WAIT_MS = 200  # for a partition known to be behind, before a batch goes without it


def dumps(obj: Any) -> bytes:
    """A JSON record value (datetimes as strings), for the records the worker writes outside the hot path."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def to_scored(
    msgs: list[Message], outputs: dict[str, Any], settings: Settings, knowledge: Knowledge, ms: float
) -> list[Scored]:
    """Both models' outputs joined to their messages; chat text masked before it is stored anywhere."""
    sent, top = outputs[settings.sentiment_model], outputs[settings.topic_model]
    now = datetime.now(UTC)
    # per batch, not per cell: rounding, argmax and the conversion to Python floats
    sent_rows, top_rows = (o.probs.astype(np.float64).round(5).tolist() for o in (sent, top))
    sent_best, top_best = (o.probs.argmax(1).tolist() for o in (sent, top))
    sent_labels, top_labels = sent.labels, top.labels
    names = (settings.sentiment_model, settings.topic_model)
    candidates = [(n, out.candidate) for n, out in outputs.items() if out.candidate]
    inference_ms = round(ms, 2)
    scored = []
    for i, m in enumerate(msgs):
        tickers = extract_tickers(m.text, m.tickers, knowledge.tickers_in(m.text))
        sectors = dict.fromkeys(s for s in map(knowledge.sector, tickers) if s)
        scored.append(Scored(
            id=m.id, source=m.source, ts=m.ts,
            text=mask_pii(m.text) if m.source == "chat" else m.text,
            tickers=tickers, sectors=tuple(sectors),
            sentiment=sent_labels[sent_best[i]], sentiment_probs=dict(zip(sent_labels, sent_rows[i], strict=True)),
            topic=top_labels[top_best[i]], topic_probs=dict(zip(top_labels, top_rows[i], strict=True)),
            model_versions={names[0]: sent.versions[i], names[1]: top.versions[i]},
            candidate={n: c for n, cand in candidates if (c := cand[i]) is not None},
            scored_at=now, inference_ms=inference_ms,
        ))
    return scored


class ScoreStage(Service):
    """Started with the Faust app (``app.service``); stops after its in-flight batches are delivered."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics, knowledge: Knowledge,
                 load_reference: ReferenceLoader | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s, self.metrics, self.knowledge = settings, metrics, knowledge
        self.scorer = TritonScorer(settings.triton_grpc_url, [settings.sentiment_model, settings.topic_model],
                                   settings.triton_timeout_s, max_request=settings.batch_size)
        self.follower = EventFollower(settings, metrics)
        self.drift = DriftTracker(settings, metrics, load_reference)
        self.recent = RecentIds(settings.dedup_capacity)
        self.read_size = ReadSize(settings.batch_size, settings.score_batch_records, settings.score_batch_target_s)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._pending: deque[asyncio.Task[dict[TopicPartition, int]]] = deque()
        self._commit_lock = asyncio.Lock()
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        # resolved once the last batch read has handed its outputs to the producer: the next one waits for
        # it, so outputs reach Kafka in read order however the batches' inference interleaves
        self._turn: asyncio.Future[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def on_start(self) -> None:
        # not awaited here: waiting for Triton's models must not hold up the worker's start
        self._loop_task = asyncio.create_task(self._run())

    async def on_stop(self) -> None:
        self._closing = True
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), timeout=60)
            except (TimeoutError, asyncio.CancelledError):
                self._loop_task.cancel()
                log.warning("score stage did not finish its batches in 60 s; they will be read again")
            except Exception:  # already logged by the loop
                pass
        for step in (self._stop_consumer, self._stop_producer, self.follower.stop, self.scorer.close):
            try:
                await step()
            except Exception:
                log.warning("score stage: %s failed while stopping", step, exc_info=True)

    async def _stop_consumer(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: its partitions move to the other workers now

    async def _stop_producer(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def _connect(self) -> None:
        await self.scorer.start()
        await self.follower.start()  # caught up on model-events before the first message is routed
        conf = aiokafka_config(self.s)
        self.producer = AIOKafkaProducer(**conf, acks="all", max_batch_size=256 * 1024, linger_ms=5)
        await self.producer.start()
        for short in NAMES:
            topic = self.s.topic(short)
            self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        await self.adopt_faust_offsets()
        session_ms = int(self.s.kafka_session_timeout_s * 1000)
        self.consumer = AIOKafkaConsumer(
            **conf, group_id=self.s.score_group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self.s.score_batch_records, session_timeout_ms=session_ms,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            heartbeat_interval_ms=max(session_ms // 3, 100),
        )
        self.consumer.subscribe([self.s.topic(t) for t in INPUTS], listener=_Revoke(self))
        await self.consumer.start()

    async def _run(self) -> None:
        try:
            await self._connect()
        except Exception:
            log.exception("score stage could not start; the worker stops")
            raise
        consumer = self.consumer
        assert consumer is not None
        while not self._closing:
            try:
                size = self.read_size.next()
                records = await consumer.getmany(timeout_ms=int(self.s.batch_timeout_s * 1000), max_records=size)
                if records:
                    records.update(await self._lagging_partitions(consumer, records, size))
                    batch = self._aligned(consumer, self._parse(records))
                    turn = asyncio.get_running_loop().create_future()
                    self._pending.append(asyncio.create_task(self._process(batch, self._turn, turn)))
                    self._turn = turn
                await self._settle()
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup: what is in flight stays in flight, nothing is committed early
                log.exception("score stage error; retrying")
                await asyncio.sleep(1.0)
        await self._settle(drain=True)

    async def _lagging_partitions(self, consumer: AIOKafkaConsumer, records: Records, size: int) -> Records:
        """Records of assigned partitions that are behind but missing from ``records``, waiting briefly.

        After an outage the backlog is fetched a partition at a time: a batch of all of ``news`` up to now,
        then ``chat`` from minutes ago, would put chat's events behind the watermark their keys already have
        (Kafka Streams waits for every partition's data for the same reason, ``max.task.idle.ms``).
        """
        behind = []
        for tp in consumer.assignment():
            if tp in records:
                continue
            high = consumer.highwater(tp)  # None before the first fetch answer: nothing known to wait for
            if high is not None and high > await consumer.position(tp):
                behind.append(tp)
        if not behind:
            return {}
        return await consumer.getmany(*behind, timeout_ms=LAGGING_WAIT_MS, max_records=size)

    def _parse(self, records: Records) -> Batch:
        """Each record with its message, or the reason it is invalid (dead-lettered by ``_process``)."""
        batch: Batch = {}
        for tp, recs in records.items():
            items: list[tuple[Any, Message | str]] = []
            for r in recs:
                try:
                    items.append((r, parse_message(r.value, self.s.max_text_chars)))
                except InvalidMessage as exc:
                    items.append((r, exc.reason))
                except Exception as exc:  # a validator bug must not fail the batch
                    log.exception("validation failed unexpectedly")
                    items.append((r, f"validation failed: {exc}"))
            batch[tp] = items
        return batch

    def _aligned(self, consumer: AIOKafkaConsumer, batch: Batch) -> Batch:
        """The batch cut at the event time every partition with more to read has reached (streams/score/align.py);
        a partition cut short is read again from its first record left out."""
        times = {tp: [m.epoch if isinstance(m, Message) else None for _, m in items] for tp, items in batch.items()}
        unfinished = {tp for tp, items in batch.items()
                      if (high := consumer.highwater(tp)) is not None and high > items[-1][0].offset + 1}
        for tp, n in keep_counts(times, unfinished).items():
            if n < len(batch[tp]):
                consumer.seek(tp, batch[tp][n][0].offset)
                batch[tp] = batch[tp][:n]
        return {tp: items for tp, items in batch.items() if items}

    # --- ordered completion ---------------------------------------------------------------------
    async def _settle(self, drain: bool = False) -> None:
        """Commit finished batches in read order: all of them with ``drain``, else the done ones, waiting
        for the oldest while ``score_concurrency`` batches are in flight."""
        async with self._commit_lock:
            while self._pending and (drain or self._pending[0].done()
                                     or len(self._pending) >= self.s.score_concurrency):
                task = self._pending.popleft()
                try:
                    offsets = await task
                except Exception:  # a bug, not a bad message (those are dead-lettered): read it all again
                    await self._rewind()
                    return
                await self._commit(offsets)

    async def _rewind(self) -> None:
        log.exception("a batch failed; the stage reads again from the last commit")
        for task in self._pending:
            task.cancel()
        self._pending.clear()
        self._turn = None
        self.recent.clear()  # the failed batch's ids were marked as seen; they must be scored when re-read
        if self.consumer is not None:
            await self.consumer.seek_to_committed()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # the partition moved to another worker, which reads these again
            log.warning("commit of %s failed (%s): the batch will be read again", offsets, exc)

    # --- one batch --------------------------------------------------------------------------------
    async def _process(self, records: Batch, after: asyncio.Future[None] | None, turn: asyncio.Future[None]
                       ) -> dict[TopicPartition, int]:
        """Score concurrently with the other batches in flight, produce in read order (``after`` → ``turn``):
        event time runs forward within a partition, and the windows agent dead-letters what comes too late."""
        try:
            return await self._process_in_turn(records, after, turn)
        finally:
            if not turn.done():  # a cancelled or failed batch must not hold up the next one
                turn.set_result(None)

    async def _process_in_turn(self, records: Batch, after: asyncio.Future[None] | None,
                               turn: asyncio.Future[None]) -> dict[TopicPartition, int]:
        metrics = self.metrics
        out = Outbox(self._partitions)
        valid: list[tuple[Any, Message]] = []
        counts: Counter[str] = Counter()
        for tp, items in records.items():
            counts[tp.topic] += len(items)
            for r, msg in items:
                if isinstance(msg, str):
                    self._dead_letter(out, msg, r, "validate")
                    continue
                if msg.id in self.recent:
                    metrics.duplicates.inc()  # counted, not scored twice: the first copy's output stands
                    continue
                # safe before delivery: batches commit in read order and a delivery is retried until it
                # succeeds, so a later duplicate is never committed ahead of its first copy's output
                self.recent.add(msg.id)
                valid.append((r, msg))
        for topic, n in counts.items():
            metrics.messages_in.labels(topic).inc(n)
        metrics.batch_size.observe(sum(counts.values()))
        # event-time order across the batch's partitions (stable: read order among equal times). A backlog
        # comes a partition at a time: news up to now, then chat from minutes ago; folded in that order,
        # a ticker's chat events would land behind its watermark and be dead-lettered as late.
        valid.sort(key=lambda rm: rm[1].ts)
        if valid:
            await self._score(valid, out)
        if after is not None:
            await after
        await self._deliver(out, turn)
        return {tp: items[-1][0].offset + 1 for tp, items in records.items()}

    async def _score(self, valid: list[tuple[Any, Message]], out: Outbox) -> None:
        s, metrics = self.s, self.metrics
        t0 = time.perf_counter()
        msgs = [m for _, m in valid]
        try:
            outputs = await self.scorer.score([m.text for m in msgs], [m.id for m in msgs], self.follower.routes)
            elapsed = time.perf_counter() - t0
            metrics.inference_seconds.observe(elapsed)
            self.read_size.observe(len(msgs), elapsed)
            scored = to_scored(msgs, outputs, s, self.knowledge, elapsed * 1000)
        except Exception as exc:  # non-retryable inference error: dead-letter, keep the worker up
            log.exception("scoring failed for a batch of %d", len(valid))
            for r, _ in valid:
                self._dead_letter(out, f"inference failed: {exc}", r, "score")
            return
        combiner = Combiner(s.window_s, s.alert_top_messages)
        sources: Counter[str] = Counter()
        scored_topic = s.topic("scored")
        for (r, _), sc in zip(valid, scored, strict=True):
            try:
                value = sc.to_json()
                combiner.add(sc)
            except Exception as exc:  # a bug in building one output: that message goes, the batch stays
                self._dead_letter(out, f"output failed: {exc}", r, "score")
                continue
            out.add(scored_topic, sc.id.encode(), value)
            sources[sc.source] += 1
        for d in self.drift.observe(scored):
            log.warning("drift: %s v%s %s PSI %.3f", d.model, d.version, d.kind, d.psi)
            out.add(s.topic("model-events"), d.model.encode(), dumps(d.as_dict(event_time())))
        for source, n in sources.items():
            metrics.scored.labels(source).inc(n)
        # per partition, one record of all its keys' partials (streams/windows/fold.py); a key's partition is the one
        # a record keyed by it would get, so the windows agent's table stays co-partitioned
        trend_topic = s.topic("trend-events")
        by_partition: dict[int, list[Partial]] = {}
        for key, partials in combiner.partials().items():
            by_partition.setdefault(partition_for(key.encode(), self._partitions[trend_topic]), []).extend(partials)
        for partition, partials in by_partition.items():
            for value in pack_partials(partials):
                out.add_to(trend_topic, partition, value)

    def _dead_letter(self, out: Outbox, reason: str, r: Any, stage: str) -> None:
        self.metrics.dead_letter.labels(stage).inc()
        record = dead_letter_record(reason, r.value, stage=stage, topic=r.topic, partition=r.partition,
                                    offset=r.offset)
        out.add(self.s.topic("dead-letter"), r.key or b"", dumps(record))

    async def _deliver(self, out: Outbox, turn: asyncio.Future[None]) -> None:
        """Until the broker has every record: a batch whose outputs are lost must not be committed."""
        assert self.producer is not None
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

    # --- upgrades -----------------------------------------------------------------------------------
    async def adopt_faust_offsets(self) -> None:
        """Give this stage's group the Faust app group's input offsets when it has none of its own.

        Before the score stage, a Faust agent in the app's own group read the inputs. Without this, the first
        worker of a new version would read every input from the beginning and the windows agent would
        dead-letter the whole history as late. Done before the stage's consumer joins, as a commit: a seek
        from the rebalance listener raced with the fetcher, which had already started at the earliest offset.
        """
        from aiokafka.admin import AIOKafkaAdminClient

        conf = aiokafka_config(self.s)
        inputs = {self.s.topic(t) for t in INPUTS}
        admin = AIOKafkaAdminClient(**conf)
        try:
            await admin.start()
            mine = await admin.list_consumer_group_offsets(self.s.score_group_id)
            if any(tp.topic in inputs for tp in mine):
                return
            theirs = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(self.s.group_id)).items()
                      if tp.topic in inputs and meta.offset >= 0}
        except Exception:  # no answer: the partitions start as configured (earliest), nothing is lost
            log.warning("could not read the consumer groups' input offsets", exc_info=True)
            return
        finally:
            await admin.close()
        if not theirs:
            return
        consumer = AIOKafkaConsumer(**conf, group_id=self.s.score_group_id, enable_auto_commit=False)
        try:
            await consumer.start()
            consumer.assign(list(theirs))
            await consumer.commit(theirs)
            log.info("score stage starts where the Faust group %s left the inputs: %s", self.s.group_id,
                     {f"{tp.topic}:{tp.partition}": o for tp, o in sorted(theirs.items())})
        except Exception:  # e.g. another new worker joined first and adopted them; never fatal
            log.warning("could not adopt the Faust group's input offsets", exc_info=True)
        finally:
            await consumer.stop()

    # --- observability ----------------------------------------------------------------------------
    async def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the end per assigned input partition (the consumer-lag gauge)."""
        return await partition_lags(self.consumer) if self.consumer is not None else {}


async def partition_lags(consumer: Any) -> dict[tuple[str, int], int]:
    """Records behind the end per assigned partition, for an aiokafka consumer or Faust's (same calls)."""
    lags = {}
    for tp in consumer.assignment():
        with contextlib.suppress(Exception):  # no position yet right after an assignment
            high, position = consumer.highwater(tp), await consumer.position(tp)
            if high is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(high - position, 0)
    return lags


class _Revoke(ConsumerRebalanceListener):
    """Before partitions move to another worker, deliver and commit what was read from them."""

    def __init__(self, stage: ScoreStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.stage._settle(drain=True)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
