"""The score stage: news/chat → Triton → scored records and per-key trend events, a batch at a time.

:class:`ScoreStage` only wires its collaborators: read (reader.py) → align (aligner.py) → score (scorer.py)
→ produce in read order (publisher.py) → commit (committer.py). Batches are scored ``scoring.concurrency`` at
a time but produced and committed in the order they were read, and a batch's offsets are committed only
once its outputs are acknowledged: at-least-once by construction; with ``kafka.processing_guarantee``
exactly_once, outputs and offsets are one transaction per batch. Every per-message failure is
dead-lettered with its reason; a failed delivery is retried, whole; only a stage that cannot start (or
whose loop ends in an error) stops the worker, with one line saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from mode import Service

from streams.control.drift_tracker import DriftTracker, ReferenceLoader
from streams.control.model_events import EventFollower
from streams.knowledge import Knowledge
from streams.metrics import PipelineMetrics
from streams.records import Message, Scored
from streams.score.aligner import Aligner
from streams.score.batch import Batch, Offsets
from streams.score.clock import PartitionClock, partition_name
from streams.score.committer import Committer, InTransaction
from streams.score.dedup import RecentIds
from streams.score.outbox import Outbox
from streams.score.publisher import CommitOffsets, Publisher, kafka_producer
from streams.score.rates import RatesBook, RatesLoader
from streams.score.read_size import ReadSize
from streams.score.reader import BatchSource, Reader
from streams.score.scorer import Scorer
from streams.score.triton_client import TritonScorer
from streams.windows.watermark import Mark
from tonewatch.core.errors import ServiceError
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
# an idle stage checks its marks this often and sends them when they changed, or at least every REMARK_S
# (a restarted windows agent learns them again)
MARK_INTERVAL_S, REMARK_S = 1.0, 30.0


class ScoreStage(Service):
    """Started with the Faust app (``app.service``); stops after its in-flight batches are delivered.

    A stage that cannot start, or whose loop ends in an error, hands one line saying why to ``on_fatal`` (the
    worker's ``streams.app.Shutdown``: it stops, exit non-zero); without one, the error crashes this service.
    """

    def __init__(self, reader: BatchSource, aligner: Aligner, scorer: Scorer, publisher: Publisher,
                 committer: Committer, recent: RecentIds, metrics: PipelineMetrics, clock: PartitionClock,
                 on_fatal: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_fatal = on_fatal
        self.reader, self.aligner, self.scorer = reader, aligner, scorer
        self.publisher, self.committer = publisher, committer
        self.recent, self.metrics, self.clock = recent, metrics, clock
        self._marked = 0.0  # when the last marks went out (monotonic)
        self._marks: dict[str, Mark] = {}  # and what they were
        self._closing = False
        self._loop_task: asyncio.Future[Any] | None = None
        # resolved once the last batch read has handed its outputs to the producer: the next one waits for
        # it, so outputs reach Kafka in read order however the batches' inference interleaves
        self._turn: asyncio.Future[None] | None = None
        committer.on_rewind(self._forget)
        committer.on_rewind(clock.rollback)

    # --- lifecycle ------------------------------------------------------------------------------
    async def on_start(self) -> None:
        # not awaited here: waiting for Triton's models must not hold up the worker's start. A future of the
        # service, not a bare task: an error escaping it crashes the service instead of vanishing unread
        self._loop_task = self.add_future(self._run())

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
        for step in (self.reader.stop, self.publisher.stop, self.scorer.stop):
            try:
                await step()
            except Exception:
                log.warning("score stage: %s failed while stopping", step, exc_info=True)

    async def _connect(self) -> None:
        await self.scorer.start()
        await self.publisher.start()
        await self.reader.start(on_revoke=self.committer.drain)

    async def _run(self) -> None:
        """Connect, then read until stopped. Failing to connect (Triton not serving within its start-up wait, a
        refused Kafka login, the model-events follower) or an error that ends the loop is fatal: one line to
        ``on_fatal``, the traceback only at DEBUG; the stage has nothing left to do, and must not look alive."""
        phase = "could not start"
        try:
            await self._connect()
            phase = "failed"
            while not self._closing:
                try:
                    await self.step()
                except (asyncio.CancelledError, ServiceError):  # a collaborator refusing for good: fatal
                    raise
                except Exception:  # a broker hiccup: what is in flight stays in flight, nothing is committed early
                    log.exception("score stage error; retrying")
                    await asyncio.sleep(1.0)
            await self.committer.drain()
        except Exception as exc:
            if self.on_fatal is None:
                raise  # mode crashes the service, and with it the worker
            log.debug("score stage %s", phase, exc_info=True)
            self.on_fatal(" ".join(f"score stage {phase}: {type(exc).__name__}: {exc}".split()))

    async def step(self) -> None:
        """One read: its batch goes in flight, then the batches finished in read order are committed."""
        batch = await self.reader.read()
        if batch or self._marks_due():
            batch = self.aligner.align(batch) if batch else batch
            turn = asyncio.get_running_loop().create_future()
            self.committer.track(asyncio.create_task(self._process(batch, self._turn, turn)))
            self._turn = turn
        await self.committer.settle()

    def _marks_due(self) -> bool:
        """With nothing read: whether the windows agent should hear where this stage's partitions are."""
        since = time.monotonic() - self._marked
        if since < MARK_INTERVAL_S:
            return False
        return since >= REMARK_S or self.clock.marks(self.reader.assigned()) != self._marks

    def _forget(self) -> None:
        """After a failed batch: the cancelled batches' turns never come, and their ids must be scored again."""
        self._turn = None
        self.recent.clear()

    # --- one batch --------------------------------------------------------------------------------
    async def _process(self, batch: Batch, after: asyncio.Future[None] | None, turn: asyncio.Future[None]
                       ) -> Offsets:
        """Score concurrently with the other batches in flight, produce in read order (``after`` → ``turn``), so
        each trend-events partition gets the partials before the marks that follow them."""
        try:
            out = self.publisher.outbox()
            valid, late = self._admit(batch, out)
            marks = self.clock.marks(self.reader.assigned())
            self._marked, self._marks = time.monotonic(), marks
            if valid:
                await self._score(valid, late, out)
            self.publisher.add_marks(out, marks, self.reader.inputs())
            offsets = {tp: items[-1][0].offset + 1 for tp, items in batch.items()}
            if after is not None:
                await after
            await self.publisher.deliver(out, turn, self._with_times(offsets))
            return offsets
        finally:
            if not turn.done():  # a cancelled or failed batch must not hold up the next one
                turn.set_result(None)

    def _with_times(self, offsets: Offsets) -> CommitOffsets:
        """Each offset with the partition time reached there, for a transaction to commit."""
        return {tp: (o, self.clock.peek(partition_name(tp.topic, tp.partition), o)) for tp, o in offsets.items()}

    def _admit(self, batch: Batch, out: Outbox) -> tuple[list[tuple[Any, Message]], set[str]]:
        """The batch's valid messages not seen before, in event-time order, and the ids of those too late to
        count (judged in each partition's own order, duplicates included); invalid ones are dead-lettered."""
        metrics = self.metrics
        valid: list[tuple[Any, Message]] = []
        late: set[str] = set()
        counts: Counter[str] = Counter()
        for tp, items in batch.items():
            counts[tp.topic] += len(items)
            name = partition_name(tp.topic, tp.partition)
            for r, msg in items:
                if isinstance(msg, str):
                    self.publisher.dead_letter(out, msg, r, "validate")
                    continue
                if not self.clock.admit(name, msg.epoch):
                    late.add(msg.id)
                if msg.id in self.recent:
                    metrics.duplicates.inc()  # counted, not scored twice: the first copy's output stands
                    continue
                # safe before delivery: batches commit in read order and a delivery is retried until it
                # succeeds, so a later duplicate is never committed ahead of its first copy's output
                self.recent.add(msg.id)
                valid.append((r, msg))
            if items:
                self.clock.checkpoint(name, items[-1][0].offset + 1)
        for topic, n in counts.items():
            metrics.messages_in.labels(topic).inc(n)
        metrics.batch_size.observe(sum(counts.values()))
        # event-time order across the batch's partitions (stable: read order among equal times), so the
        # combiner's partials keep each key's windows in order
        valid.sort(key=lambda rm: rm[1].ts)
        return valid, late

    async def _score(self, valid: list[tuple[Any, Message]], late: set[str], out: Outbox) -> None:
        scored = await self._score_or_split([m for _, m in valid])
        self.publisher.add_scored(out, valid, scored, late)

    async def _score_or_split(self, msgs: list[Message]) -> list[Scored | str]:
        """Scored records, or for a message Triton refuses on its own (a non-retryable error), the reason: a
        refused request is split in halves until the messages that fail alone are found."""
        try:
            return await self.scorer.score(msgs)
        except Exception as exc:
            if len(msgs) == 1:
                log.warning("inference failed for message %s: %s", msgs[0].id, exc)
                return [f"inference failed: {exc}"]
            half = len(msgs) // 2
            return await self._score_or_split(msgs[:half]) + await self._score_or_split(msgs[half:])


def build_score_stage(settings: Settings, metrics: PipelineMetrics, knowledge: Knowledge,
                      load_reference: ReferenceLoader | None = None,
                      on_fatal: Callable[[str], None] | None = None, load_rates: RatesLoader | None = None
                      ) -> ScoreStage:
    """The stage with its real collaborators: Kafka clients and Triton's channel open when it starts.
    ``on_fatal``: see :class:`ScoreStage`."""
    models = (settings.triton.sentiment_model, settings.triton.topic_model)
    triton = TritonScorer(settings.triton.grpc_url, list(models), settings.triton.timeout_s,
                          max_request=settings.scoring.batch_size, startup_timeout_s=settings.triton.startup_timeout_s)
    read_size = ReadSize(settings.scoring.batch_size, settings.scoring.batch_records, settings.scoring.batch_target_s)
    clock = PartitionClock(settings.detector.allowed_lateness_s, settings.detector.idle_s)
    reader = Reader(settings, read_size, clock)
    scorer = Scorer(triton, EventFollower(settings, metrics), models, knowledge, metrics, settings.scoring.max_tickers,
                    observe=read_size.observe)
    rates = RatesBook(settings.triton.model_repository, settings.triton.sentiment_model, load_rates)
    publisher = Publisher(settings, metrics, DriftTracker(settings, metrics, load_reference),
                          producer=partial(kafka_producer, settings), adjust=rates.adjusted)
    store = InTransaction(reader, clock) if publisher.transactional else reader
    committer = Committer(store, settings.scoring.concurrency)
    return ScoreStage(reader, Aligner(reader), scorer, publisher, committer, RecentIds(settings.scoring.dedup_capacity),
                      metrics, clock, on_fatal)
