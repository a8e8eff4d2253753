"""The windows agent (trend events → trends, alerts), the score stage, and the worker's timers.

The score stage (streams/score/stage.py) reads the input topics itself, a batch at a time, and writes
scored records and, per partition, a record of the batch's trend events summed per key and window; the
windows agent folds those into the state table. Every per-event failure goes through
:func:`streams.errors.dead_letter_record`; outputs are awaited before a batch is acknowledged, so
offsets never move past unproduced results.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streams.control.drift_tracker import ReferenceLoader
from streams.knowledge import Knowledge
from streams.metrics import PipelineMetrics
from streams.score.offsets import HoleHealer, heal
from streams.score.rates import RatesLoader
from streams.score.reader import partition_lags
from streams.score.stage import build_score_stage
from streams.topics import Topics
from streams.windows.absent import AbsentOffsets
from streams.windows.folder import WindowFolder
from streams.windows.in_order import InOrder
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)


def register_agents(
    app: Any, settings: Settings, topics: Topics, table: Any, cfg: DetectorSettings, metrics: PipelineMetrics,
    knowledge: Knowledge, load_reference: ReferenceLoader | None = None, on_fatal: Callable[[str], None] | None = None,
    load_rates: RatesLoader | None = None, absent: AbsentOffsets | None = None,
) -> None:
    """The score stage as a service, the lag and offset-hole timers, and the windows agent. ``on_fatal`` hears
    why the stage gave up (``streams.app.Shutdown``); without it the stage's error crashes the app. ``absent``:
    the trend-events offsets that hold no record (transaction markers), for folding in offset order."""
    stage = build_score_stage(settings, metrics, knowledge, load_reference=load_reference, on_fatal=on_fatal,
                              load_rates=load_rates)
    app.service(stage)  # started once the table is recovered; stops after delivering what it has read
    trend_events = settings.kafka.topic("trend-events")
    folder = WindowFolder(settings, topics, table, cfg, metrics, committed=committed_offsets(app, trend_events))
    order = InOrder(committed_offsets(app, trend_events),
                    lambda p: set() if absent is None else absent.since(trend_events, p, None))

    @app.on_partitions_assigned.connect
    async def rebalanced(sender: Any, assigned: Any, **kwargs: Any) -> None:
        folder.forget()
        order.forget()

    @app.timer(interval=5.0)
    async def consumer_lag() -> None:
        """Lag per assigned partition; the gauge of a revoked partition is dropped, not left stale."""
        try:
            lags = {**await stage.reader.lags(), **await partition_lags(app.consumer)}
        except Exception:  # a rebalance in progress: try again at the next tick, never crash the worker
            log.debug("consumer lag not available", exc_info=True)
            return
        metrics.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            metrics.consumer_lag.labels(topic, str(partition)).set(lag)

    healer = HoleHealer()

    @app.timer(interval=5.0)
    async def offset_holes() -> None:
        """Re-read a partition whose commit is held back by a record no agent ever got (streams/score/offsets.py)."""
        try:
            for action, _, _ in await heal(app.consumer, healer):
                metrics.offset_holes.labels(action).inc()
        except Exception:  # a rebalance in progress: try again at the next tick, never crash the worker
            log.debug("offset hole check not available", exc_info=True)

    @app.agent(topics.trend_events, name="windows")
    async def windows(stream: Any) -> None:
        # the table is read and written once per key per batch; the detector sees every partial in order
        await fold_batches(stream, folder, settings.detector.batch_records, settings.scoring.batch_timeout_s,
                           order, rewind_to(app, trend_events))


def committed_offsets(app: Any, topic: str) -> Callable[[int], int | None]:
    """The windows group's committed offset of a ``topic`` partition, as Faust's consumer last committed it."""
    from faust.types import TP

    def committed(partition: int) -> int | None:
        offsets = getattr(app.consumer, "_committed_offset", None) or {}
        value = offsets.get(TP(topic, partition))
        return value if isinstance(value, int) else None

    return committed


def rewind_to(app: Any, topic: str) -> Callable[[int, int], Awaitable[None]]:
    """Read a ``topic`` partition again from an offset, on the worker's Faust consumer."""
    from faust.types import TP

    async def rewind(partition: int, offset: int) -> None:
        log.warning("trend-events partition %d: offset %d was never delivered; reading again from it",
                    partition, offset)
        await app.consumer.seek(TP(topic, partition), offset)

    return rewind


async def fold_batches(stream: Any, folder: Any, take: int, within: float, order: InOrder | None = None,
                       rewind: Callable[[int, int], Awaitable[None]] | None = None) -> None:
    """Fold the stream a batch at a time, and acknowledge a batch only once it is folded.

    Faust's ``take_events`` acks a batch in a ``finally``, so a worker stopped mid-batch committed offsets past
    partials whose state never reached the changelog, and their messages left their windows for good.
    ``noack_take`` leaves acking to us: an unfinished batch is read again, and keys that already hold it skip it.
    With ``order``, a record after a hole in its partition waits, unacknowledged, until the hole is read again
    (``rewind``): streams/windows/in_order.py.
    """
    async for events in stream.noack_take(take, within=within):
        ready = events if order is None else await _in_order(events, order, rewind)
        if ready:
            await folder.fold(ready)
        for event in ready:
            await stream.ack(event)


async def _in_order(events: list[Any], order: InOrder, rewind: Callable[[int, int], Awaitable[None]] | None
                    ) -> list[Any]:
    ready, held = [], set()
    for event in events:
        partition, offset = event.message.partition, event.message.offset
        if partition in held:
            continue
        fold, hole = order.admit(partition, offset)
        if fold:
            ready.append(event)
            continue
        held.add(partition)
        if hole is not None and rewind is not None:
            await rewind(partition, hole)
    return ready
