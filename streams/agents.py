"""The two agents: score (news/chat → scored + per-key trend events) and windows (→ trends, alerts).

The score agent emits a batch's trend events itself, from the records it has in memory: a separate
fan-out agent re-read every scored record from Kafka (a second consumption and JSON parse per message)
for no gain in safety, since both outputs are produced before the batch is acknowledged.
Every per-event failure goes through :func:`streams.errors.dead_letter_record`; outputs are
awaited before the batch is acknowledged, so offsets never move past unproduced results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streams.alerts import alert_payload
from streams.dedup import RecentIds
from streams.drift_worker import DriftTracker, event_time
from streams.enrich import extract_tickers, mask_pii
from streams.errors import dead_letter_record
from streams.fold import decode_events, dump_state, encode_events, fold_events, group_by_key, load_state
from streams.knowledge import Knowledge
from streams.lifecycle import SharedLifecycle
from streams.metrics import GAUGE_DIMENSIONS, PipelineMetrics
from streams.model_events import EventFollower
from streams.offsets import HoleHealer, heal
from streams.records import InvalidMessage, Message, Scored, parse_message
from streams.scoring import TritonScorer
from streams.topics import Topics
from streams.trends import trend_events, trend_record
from streams.windows import DetectorConfig, TrendEvent
from tonewatch.settings import Settings

log = logging.getLogger(__name__)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def _to_scored(
    msgs: list[Message], outputs: dict[str, Any], settings: Settings, knowledge: Knowledge, ms: float
) -> list[Scored]:
    sent, top = outputs[settings.sentiment_model], outputs[settings.topic_model]
    now = datetime.now(UTC)
    scored = []
    sent_rows, top_rows = (o.probs.astype(np.float64).round(5).tolist() for o in (sent, top))  # per batch, not cell
    for i, m in enumerate(msgs):
        sp = dict(zip(sent.labels, sent_rows[i], strict=True))
        tp = dict(zip(top.labels, top_rows[i], strict=True))
        tickers = extract_tickers(m.text, m.tickers, knowledge.tickers_in(m.text))
        sectors = dict.fromkeys(s for s in map(knowledge.sector, tickers) if s)
        scored.append(Scored(
            id=m.id, source=m.source, ts=m.ts,
            text=mask_pii(m.text) if m.source == "chat" else m.text,
            tickers=tickers, sectors=tuple(sectors),
            sentiment=max(sp, key=sp.__getitem__), sentiment_probs=sp,
            topic=max(tp, key=tp.__getitem__), topic_probs=tp,
            model_versions={settings.sentiment_model: sent.versions[i], settings.topic_model: top.versions[i]},
            candidate={n: c for n, out in outputs.items() if out.candidate and (c := out.candidate[i]) is not None},
            scored_at=now, inference_ms=round(ms, 2),
        ))
    return scored


def register_agents(
    app: Any, settings: Settings, topics: Topics, table: Any, cfg: DetectorConfig, metrics: PipelineMetrics,
    knowledge: Knowledge,
) -> None:
    async def dead_letter(reason: str, event: Any, stage: str, payload: bytes | None = None) -> Awaitable[Any]:
        """``payload`` names the part of a batch record that failed; by default the whole record."""
        msg = event.message
        metrics.dead_letter.labels(stage).inc()
        record = dead_letter_record(
            reason, event.value if payload is None else payload, stage=stage, topic=msg.topic,
            partition=msg.partition, offset=msg.offset,
        )
        return await topics.dead_letter.send(key=event.key, value=_dumps(record))

    async def produce(topic: Any, key: bytes, value: bytes) -> Awaitable[Any]:
        """The hot paths go straight to the producer: Faust's Topic.send wraps every record in futures and
        callbacks that cost more than the send itself at thousands of records a second."""
        return await app.producer.send(topic.get_topic_name(), key, value, None, None, None)

    @app.timer(interval=5.0)
    async def consumer_lag() -> None:
        """Lag per assigned partition; the gauge of a revoked partition is dropped, not left stale."""
        consumer = app.consumer
        try:
            lags = {}
            for tp in consumer.assignment():
                position = await consumer.position(tp)
                if position is not None:
                    lags[tp] = max(consumer.highwater(tp) - position, 0)
        except Exception:  # a rebalance in progress: try again at the next tick, never crash the worker
            log.debug("consumer lag not available", exc_info=True)
            return
        metrics.consumer_lag.clear()
        for tp, lag in lags.items():
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    healer = HoleHealer()

    @app.timer(interval=5.0)
    async def offset_holes() -> None:
        """Re-read a partition whose commit is held back by a record no agent ever got (streams/offsets.py)."""
        try:
            for action, _, _ in await heal(app.consumer, healer):
                metrics.offset_holes.labels(action).inc()
        except Exception:  # a rebalance in progress: try again at the next tick, never crash the worker
            log.debug("offset hole check not available", exc_info=True)

    recent = RecentIds(settings.dedup_capacity)
    drift = DriftTracker(settings, metrics)

    scorer = TritonScorer(
        settings.triton_grpc_url, [settings.sentiment_model, settings.topic_model], settings.triton_timeout_s
    )
    follower = EventFollower(settings, metrics)
    # one gRPC client and one model-events follower for every concurrent scoring actor, started by the
    # first actor (caught up on model-events before the first message is routed) and closed by the last
    clients = SharedLifecycle(scorer.start, follower.start, stop=(follower.stop, scorer.close))
    # ids a concurrent batch is scoring now, with the future that batch resolves once its outputs are
    # delivered: a duplicate waits on it before its own batch is acked, or a kill -9 in between could
    # commit the offset with no scored record anywhere
    inflight: dict[str, asyncio.Future[None]] = {}

    @app.agent(topics.inputs, name="score", concurrency=settings.score_concurrency)
    async def score(stream: Any) -> None:
        async with clients:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout_s):
                await _score_batch(scorer, events)

    async def _score_batch(scorer: TritonScorer, events: list[Any]) -> None:
        pending: list[Awaitable[Any]] = []
        valid: list[tuple[Any, Message]] = []
        firsts: list[asyncio.Future[None]] = []  # deliveries of the first copies of this batch's duplicates
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        metrics.batch_size.observe(len(events))
        for topic, n in Counter(ev.message.topic for ev in events).items():  # labels() once per batch, not per record
            metrics.messages_in.labels(topic).inc(n)
        for ev in events:
            try:
                msg = parse_message(ev.value, settings.max_text_chars)
            except InvalidMessage as exc:
                pending.append(await dead_letter(exc.reason, ev, "validate"))
                continue
            if msg.id in recent or msg.id in inflight:
                metrics.duplicates.inc()  # counted, not scored twice: the first copy's output stands
                log.debug("duplicate message id %s skipped", msg.id)
                if (first := inflight.get(msg.id)) is not None:
                    firsts.append(first)
                continue
            inflight[msg.id] = done
            valid.append((ev, msg))
        try:
            if valid:
                await _score_valid(scorer, valid, pending)
            await asyncio.gather(*pending)
            for _, m in valid:  # only now: a duplicate skipped on an id needs that id's output delivered
                recent.add(m.id)
            done.set_result(None)
        except BaseException as exc:  # the duplicates' batches fail too, so they are not acked either
            if isinstance(exc, asyncio.CancelledError):
                done.cancel()
            else:
                done.set_exception(exc)
                done.exception()  # retrieved: no "never retrieved" warning when no duplicate waits
            raise
        finally:
            for _, m in valid:
                inflight.pop(m.id, None)
        await asyncio.gather(*firsts)

    async def _score_valid(scorer: TritonScorer, valid: list[tuple[Any, Message]], pending: list[Awaitable[Any]]
                           ) -> None:
        t0 = time.perf_counter()
        try:
            msgs = [m for _, m in valid]
            outputs = await scorer.score([m.text for m in msgs], [m.id for m in msgs], follower.routes)
            elapsed = time.perf_counter() - t0
            metrics.inference_seconds.observe(elapsed)
            scored = _to_scored(msgs, outputs, settings, knowledge, elapsed * 1000)
        except Exception as exc:  # non-retryable inference error: dead-letter, keep the worker up
            log.exception("scoring failed for a batch of %d", len(valid))
            for ev, _ in valid:
                pending.append(await dead_letter(f"inference failed: {exc}", ev, "score"))
            return
        trend: list[TrendEvent] = []
        sources: Counter[str] = Counter()
        for (ev, _), s in zip(valid, scored, strict=True):
            try:
                events = list(trend_events(s))
                pending.append(await produce(topics.scored, s.id.encode(), s.model_dump_json().encode()))
            except Exception as exc:  # a bug in building one output: that message goes, the batch stays
                pending.append(await dead_letter(f"output failed: {exc}", ev, "score"))
                continue
            sources[s.source] += 1
            trend.extend(events)
            for d in drift.observe(s):
                log.warning("drift: %s v%s %s PSI %.3f", d.model, d.version, d.kind, d.psi)
                pending.append(await topics.model_events.send(key=d.model.encode(),
                                                              value=_dumps(d.as_dict(event_time()))))
        for source, n in sources.items():
            metrics.scored.labels(source).inc(n)
        # one record per key per batch (streams/fold.py), keyed for the windows agent's table partition
        for key, group in group_by_key(trend).items():
            pending.append(await produce(topics.trend_events, key.encode(), encode_events(group)))

    @app.agent(topics.trend_events, name="windows")
    async def windows(stream: Any) -> None:
        # the table is read and written once per key per batch; the detector still sees every event in order
        async for events in stream.take_events(settings.agg_batch_size, within=settings.batch_timeout_s):
            per_key: dict[str, list[tuple[Any, TrendEvent]]] = {}
            sends: list[Awaitable[Any]] = []
            for ev in events:
                try:
                    key = ev.key.decode()
                    per_key.setdefault(key, []).extend((ev, t) for t in decode_events(ev.value))
                except Exception as exc:
                    sends.append(await dead_letter(f"bad trend event: {exc}", ev, "windows"))
            for key, items in per_key.items():
                try:
                    sends.extend(await _fold_key(key, items))
                except Exception as exc:  # a bug in the fold: every record of the key goes, none is lost
                    for ev in {id(e): e for e, _ in items}.values():
                        sends.append(await dead_letter(f"window update failed: {exc}", ev, "windows"))
            await asyncio.gather(*sends)

    async def _fold_key(key: str, items: list[tuple[Any, TrendEvent]]) -> list[Awaitable[Any]]:
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
                sends.append(await dead_letter(f"later than allowed lateness ({cfg.allowed_lateness_s}s)", ev,
                                               "windows", payload=encode_events([tev])))
                continue
            accepted += 1
            for closed in update.closed:
                record = trend_record(tev.dimension, tev.key, closed, cfg.window_s)
                sends.append(await topics.trends.send(key=ev.key, value=_dumps(record)))
            for t in update.transitions:
                payload = alert_payload(t, tev, cfg.window_s, settings.dashboard_url)
                log.info("alert %s %s %s=%s", t.status, t.severity, tev.dimension, tev.key)
                metrics.alerts.labels(t.status, t.severity, tev.dimension).inc()
                sends.append(await topics.alerts.send(key=t.alert_id.encode(), value=_dumps(payload)))
        last = items[-1][1]
        metrics.trend_events.labels(last.dimension).inc(accepted)  # one key, so one dimension
        if last.dimension in GAUGE_DIMENSIONS and fold.state.windows:
            latest = fold.state.windows[-1]
            metrics.negative_share.labels(last.dimension, last.key).set(latest.share)
            metrics.window_volume.labels(last.dimension, last.key).set(latest.count)
        return sends
