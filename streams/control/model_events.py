"""A worker's view of the model-events topic: replayed at start, then followed.

Every partition, no consumer group; scoring waits until it has caught up
(docs/decisions/2026-12-07-model-events-routing.md). A record that cannot be applied is skipped and
dead-lettered with its reason: raising would stop the worker's start at every replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from streams.control.routing import InvalidEvent, Route, apply_event, parse_event
from streams.errors import dead_letter_record
from streams.metrics import PipelineMetrics
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
TOPIC = "model-events"
DeadLetter = Callable[[bytes, bytes], Awaitable[object]]  # (key, value) onto the dead-letter topic
DEAD_LETTER_TIMEOUT_S = 10.0


class EventFollower:
    """Holds the current routes; ``routes()`` is what the scorer reads before every attempt.

    ``dead_letter`` sends a rejected record's dead letter; by default a producer of the follower's own,
    started at the first bad record (they are rare, and the stage's producer delivers per batch).
    """

    def __init__(self, settings: Settings, metrics: PipelineMetrics, dead_letter: DeadLetter | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._dead_letter = dead_letter or self._send_dead_letter
        self._producer: Any = None
        # every replay reads the bad records again: each is dead-lettered once per worker, not per replay
        self._rejected: set[tuple[str, int, int]] = set()
        self._routes: dict[str, Route] = {}
        self._exported: dict[str, list[tuple[str, str, str]]] = {}
        self._served: dict[str, str] = {}  # what Triton serves by default, for models with no promoted event
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> Mapping[str, Route]:
        return self._routes

    def apply(self, raw: bytes | None) -> str | None:
        """Apply one record; returns why it was skipped (routes unchanged), None once applied. Never raises."""
        try:
            ev = parse_event(raw)
        except InvalidEvent as exc:
            return exc.reason
        route = apply_event(self._routes.get(ev.model, Route()), ev)
        self._routes = {**self._routes, ev.model: route}
        log.info("model event %s %s v%s -> %s", ev.event, ev.model, ev.version, route)
        self.export(ev.model, route, self._served.get(ev.model))
        return None

    async def consume(self, records: Iterable[Any]) -> None:
        """Apply consumer records in order; a bad one is skipped, logged and dead-lettered."""
        for r in records:
            reason = self.apply(r.value)
            where = (r.topic, r.partition, r.offset)
            if reason is not None and where not in self._rejected:
                self._rejected.add(where)
                await self._reject(reason, r)

    async def _reject(self, reason: str, r: Any) -> None:
        self._metrics.dead_letter.labels(TOPIC).inc()
        record = dead_letter_record(f"bad control record: {reason}", r.value, stage=TOPIC, topic=r.topic,
                                    partition=r.partition, offset=r.offset)  # logs it
        try:
            value = json.dumps(record, separators=(",", ":")).encode()
            await asyncio.wait_for(self._dead_letter(r.key or b"", value), DEAD_LETTER_TIMEOUT_S)
        except Exception as exc:  # routing goes on without it: the record is in the log and still on its topic
            log.warning("could not dead-letter %s:%s@%s (%s: %s)", r.topic, r.partition, r.offset,
                        type(exc).__name__, exc)

    async def _send_dead_letter(self, key: bytes, value: bytes) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            producer = AIOKafkaProducer(**aiokafka_config(self._settings.kafka), acks="all")
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        await self._producer.send_and_wait(self._settings.kafka.topic("dead-letter"), value, key=key)

    def export(self, model: str, route: Route, served: str | None = None) -> None:
        info = self._metrics.model_version_info
        for labels in self._exported.pop(model, []):  # a retired version's series goes, not left at 1
            info.remove(*labels)
        production = str(route.production) if route.production is not None else served
        series = [(model, production, "production")] if production else []
        if route.candidate is not None:
            series.append((model, str(route.candidate), "candidate"))
        for labels in series:
            info.labels(*labels).set(1)
        self._exported[model] = series
        self._metrics.canary_share.labels(model).set(route.share if route.mode == "canary" else 0.0)

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        await self.stop()  # an agent restart starts afresh
        self._consumer = AIOKafkaConsumer(**aiokafka_config(self._settings.kafka), group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        await self._consumer.start()
        try:
            await self._catch_up()
        except BaseException:
            await self.stop()
            raise
        await self._export_served()
        self._task = asyncio.create_task(self._follow())

    async def _export_served(self) -> None:
        """Without a promoted event, production is the version Triton serves by default: export it too,
        so the version and canary gauges have samples before any rollout (the newest loaded one that is
        not a candidate; Triton's default policy loads only the newest)."""
        import tritonclient.grpc.aio as grpcclient

        models = (self._settings.triton.sentiment_model, self._settings.triton.topic_model)
        client = grpcclient.InferenceServerClient(self._settings.triton.grpc_url)
        try:
            for model in models:
                route = self._routes.get(model, Route())
                if route.production is None:
                    meta = await client.get_model_metadata(model, as_json=True)
                    versions = [int(v) for v in meta.get("versions", []) if int(v) != route.candidate]
                    if versions:
                        self._served[model] = str(max(versions))
                self.export(model, route, self._served.get(model))
        except Exception:  # only the gauges lack a sample: scoring does not depend on it
            log.warning("could not read the served versions from Triton", exc_info=True)
        finally:
            await client.close()

    async def _catch_up(self) -> None:
        from aiokafka import TopicPartition

        topic = self._settings.kafka.topic(TOPIC)
        parts: set[int] = set()
        for _ in range(10):  # a topic created a moment ago can be missing from the first metadata
            parts = await self._partitions(topic)
            if parts:
                break
            await asyncio.sleep(1.0)
        if not parts:
            log.warning("no %s topic: routing stays on Triton's default versions until it exists", topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        if not tps:
            return
        await self._consumer.seek_to_beginning(*tps)
        end = await self._consumer.end_offsets(tps)
        while [tp for tp in tps if await self._consumer.position(tp) < end[tp]]:
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                await self.consume(records)

    async def _partitions(self, topic: str) -> set[int]:
        """The topic's partitions from freshly fetched metadata (empty while the topic does not exist).

        Not ``consumer.partitions_for_topic``: its cache knows only topics the consumer already tracks.
        aiokafka has no public call that returns the fetched partitions, hence its client.
        """
        cluster = await self._consumer._client.fetch_all_metadata()
        return set(cluster.partitions_for_topic(topic) or ())

    async def _follow(self) -> None:
        while True:
            try:
                if not self._consumer.assignment():  # the topic did not exist yet: look again
                    await asyncio.sleep(5.0)
                    await self._catch_up()
                    continue
                for records in (await self._consumer.getmany(timeout_ms=500)).values():
                    await self.consume(records)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup must not stop routing updates for good
                log.exception("model-events follower error; retrying")
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
