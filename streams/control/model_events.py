"""A worker's view of the model-events topic: replayed at start, then followed.

Every partition, no consumer group; scoring waits until it has caught up
(docs/decisions/2026-12-07-model-events-routing.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from streams.control.routing import InvalidEvent, ModelEvent, Route, apply_event
from streams.metrics import PipelineMetrics
from tonewatch.core.kafka_io import aiokafka_config
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)
TOPIC = "model-events"


class EventFollower:
    """Holds the current routes; ``routes()`` is what the scorer reads before every attempt."""

    def __init__(self, settings: Settings, metrics: PipelineMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._routes: dict[str, Route] = {}
        self._exported: dict[str, list[tuple[str, str, str]]] = {}
        self._served: dict[str, str] = {}  # what Triton serves by default, for models with no promoted event
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> Mapping[str, Route]:
        return self._routes

    def apply(self, raw: bytes | None) -> None:
        """One record; a bad one is logged and skipped (the CLI that writes events validates them)."""
        try:
            ev = ModelEvent.from_dict(json.loads(raw or b"null"))
        except (InvalidEvent, json.JSONDecodeError, TypeError, AttributeError) as exc:
            log.error("ignoring model event %r: %s", raw, exc)
            return
        route = apply_event(self._routes.get(ev.model, Route()), ev)
        self._routes = {**self._routes, ev.model: route}
        log.info("model event %s %s v%s -> %s", ev.event, ev.model, ev.version, route)
        self.export(ev.model, route, self._served.get(ev.model))

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
                for r in records:
                    self.apply(r.value)

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
                    for r in records:
                        self.apply(r.value)
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
