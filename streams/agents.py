"""The windows agent (trend events → trends, alerts), the score stage, and the worker's timers.

The score stage (streams/score/stage.py) reads the input topics itself, a batch at a time, and writes
scored records and, per partition, a record of the batch's trend events summed per key and window; the
windows agent folds those into the state table. Every per-event failure goes through
:func:`streams.errors.dead_letter_record`; outputs are awaited before a batch is acknowledged, so
offsets never move past unproduced results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from streams.control.drift_tracker import ReferenceLoader
from streams.errors import dead_letter_record
from streams.knowledge import Knowledge
from streams.metrics import GAUGE_DIMENSIONS, PipelineMetrics
from streams.score.offsets import HoleHealer, heal
from streams.score.publisher import dumps
from streams.score.reader import partition_lags
from streams.score.stage import build_score_stage
from streams.topics import Topics
from streams.windows.alerts import alert_payload
from streams.windows.detector import Partial
from streams.windows.fold import decode_partials, dump_state, encode_partials, fold_events, load_state, state_key
from streams.windows.trends import trend_record
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)


def register_agents(
    app: Any, settings: Settings, topics: Topics, table: Any, cfg: DetectorSettings, metrics: PipelineMetrics,
    knowledge: Knowledge, load_reference: ReferenceLoader | None = None,
) -> None:
    """The score stage as a service, the lag and offset-hole timers, and the windows agent."""
    stage = build_score_stage(settings, metrics, knowledge, load_reference=load_reference)
    app.service(stage)  # started once the table is recovered; stops after delivering what it has read
    folder = WindowFolder(settings, topics, table, cfg, metrics)

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
        take, within = settings.detector.batch_records, settings.scoring.batch_timeout_s
        async for events in stream.take_events(take, within=within):
            await folder.fold(events)


class WindowFolder:
    """The windows agent's work on one batch of trend-event records: each key's partials folded into its
    state, closed windows and alert transitions sent, every failure dead-lettered."""

    def __init__(self, settings: Settings, topics: Topics, table: Any, cfg: DetectorSettings,
                 metrics: PipelineMetrics) -> None:
        self.settings, self.topics, self.table, self.cfg, self.metrics = settings, topics, table, cfg, metrics

    async def dead_letter(self, reason: str, event: Any, stage: str, payload: bytes | None = None) -> Awaitable[Any]:
        """``payload`` names the part of a batch record that failed; by default the whole record."""
        msg = event.message
        self.metrics.dead_letter.labels(stage).inc()
        record = dead_letter_record(
            reason, event.value if payload is None else payload, stage=stage, topic=msg.topic,
            partition=msg.partition, offset=msg.offset,
        )
        return await self.topics.dead_letter.send(key=event.key, value=dumps(record))

    async def fold(self, events: list[Any]) -> None:
        per_key: dict[str, list[tuple[Any, Partial]]] = {}
        sends: list[Awaitable[Any]] = []
        for ev in events:  # a record holds the partials of many keys of its partition
            try:
                partials = decode_partials(ev.value)
            except Exception as exc:
                sends.append(await self.dead_letter(f"bad trend event: {exc}", ev, "windows"))
                continue
            for t in partials:
                per_key.setdefault(state_key(t), []).append((ev, t))
        for key, items in per_key.items():
            try:
                sends.extend(await self._fold_key(key, items))
            except Exception as exc:  # a bug in the fold: the key's partials go, per record, none is lost
                for ev in {id(e): e for e, _ in items}.values():
                    mine = [t for e, t in items if e is ev]
                    sends.append(await self.dead_letter(f"window update failed: {exc}", ev, "windows",
                                                        payload=encode_partials(mine)))
        await asyncio.gather(*sends)

    async def _fold_key(self, key: str, items: list[tuple[Any, Partial]]) -> list[Awaitable[Any]]:
        cfg, metrics, table = self.cfg, self.metrics, self.table
        state = load_state(table.get(key))
        partition = items[-1][0].message.partition
        fresh = [(ev, t) for ev, t in items if not state.holds(partition, ev.message.offset)]
        if len(fresh) < len(items):  # re-read after a restart, already in the restored state: not counted twice
            metrics.trend_replays.inc(len({id(ev) for ev, _ in items} - {id(ev) for ev, _ in fresh}))
            if not fresh:
                return []
            items = fresh
        fold = fold_events(state, (t for _, t in items), cfg)
        applied = replace(fold.state, applied=(partition, max(ev.message.offset for ev, _ in items)))
        value = dump_state(applied)
        # a batch has no "current event", which Table.__setitem__ needs for the changelog partition: write the
        # store and its changelog record directly, on the partition the key's records came from (co-partitioned)
        table.data[key] = value
        table.send_changelog(partition, key, value)
        sends: list[Awaitable[Any]] = []
        accepted = 0
        for (ev, tev), update in zip(items, fold.updates, strict=True):
            if not update.accepted:
                # one dead letter per late partial: its payload lists every message id it sums
                sends.append(await self.dead_letter(f"later than allowed lateness ({cfg.allowed_lateness_s}s)", ev,
                                                    "windows", payload=encode_partials([tev])))
                continue
            accepted += tev.count
            for closed in update.closed:
                record = trend_record(tev.dimension, tev.key, closed, cfg.window_s)
                sends.append(await self.topics.trends.send(key=key.encode(), value=dumps(record)))
            for t in update.transitions:
                payload = alert_payload(t, tev, cfg.window_s, self.settings.delivery.dashboard_url)
                log.info("alert %s %s %s=%s", t.status, t.severity, tev.dimension, tev.key)
                metrics.alerts.labels(t.status, t.severity, tev.dimension).inc()
                sends.append(await self.topics.alerts.send(key=t.alert_id.encode(), value=dumps(payload)))
        last = items[-1][1]
        metrics.trend_events.labels(last.dimension).inc(accepted)  # one key, so one dimension
        if last.dimension in GAUGE_DIMENSIONS and fold.state.windows:
            latest = fold.state.windows[-1]
            metrics.negative_share.labels(last.dimension, last.key).set(latest.share)
            metrics.window_volume.labels(last.dimension, last.key).set(latest.count)
        return sends
