"""The windows agent (trend events → trends, alerts), the score stage, and the worker's timers.

The score stage (streams/score/stage.py) reads the input topics itself, a batch at a time, and writes
scored records and, per partition, a record of the batch's trend events summed per key and window; the
windows agent folds those into the state table. Every per-event failure goes through
:func:`streams.errors.dead_letter_record`; outputs are awaited before a batch is acknowledged, so
offsets never move past unproduced results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from streams.control.drift_tracker import ReferenceLoader
from streams.knowledge import Knowledge
from streams.metrics import PipelineMetrics
from streams.score.offsets import HoleHealer, heal
from streams.score.rates import RatesLoader
from streams.score.reader import partition_lags
from streams.score.stage import build_score_stage
from streams.topics import Topics
from streams.windows.folder import WindowFolder
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)


def register_agents(
    app: Any, settings: Settings, topics: Topics, table: Any, cfg: DetectorSettings, metrics: PipelineMetrics,
    knowledge: Knowledge, load_reference: ReferenceLoader | None = None, on_fatal: Callable[[str], None] | None = None,
    load_rates: RatesLoader | None = None,
) -> None:
    """The score stage as a service, the lag and offset-hole timers, and the windows agent. ``on_fatal`` hears
    why the stage gave up (``streams.app.Shutdown``); without it the stage's error crashes the app."""
    stage = build_score_stage(settings, metrics, knowledge, load_reference=load_reference, on_fatal=on_fatal,
                              load_rates=load_rates)
    app.service(stage)  # started once the table is recovered; stops after delivering what it has read
    folder = WindowFolder(settings, topics, table, cfg, metrics,
                          committed=committed_offsets(app, settings.kafka.topic("trend-events")))

    @app.on_partitions_assigned.connect
    async def rebalanced(sender: Any, assigned: Any, **kwargs: Any) -> None:
        folder.forget()

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
        await fold_batches(stream, folder, settings.detector.batch_records, settings.scoring.batch_timeout_s)


def committed_offsets(app: Any, topic: str) -> Callable[[int], int | None]:
    """The windows group's committed offset of a ``topic`` partition, as Faust's consumer last committed it."""
    def committed(partition: int) -> int | None:
        from faust.types import TP

        offsets = getattr(app.consumer, "_committed_offset", None) or {}
        value = offsets.get(TP(topic, partition))
        return value if isinstance(value, int) else None

    return committed


async def fold_batches(stream: Any, folder: Any, take: int, within: float) -> None:
    """Fold the stream a batch at a time, and acknowledge a batch only once it is folded.

    Faust's ``take_events`` acks a batch in a ``finally``, so a worker stopped mid-batch committed offsets past
    partials whose state never reached the changelog, and their messages left their windows for good.
    ``noack_take`` leaves acking to us: an unfinished batch is read again, and keys that already hold it skip it.
    """
    async for events in stream.noack_take(take, within=within):
        await folder.fold(events)
        for event in events:
            await stream.ack(event)
