"""Writing and replaying ``<prefix>.model-events``: the durable record of who serves what.

Events are keyed by model name, so one model's events share a partition and keep their order. A record that
cannot be read is skipped and logged; the workers, which read the same topic, dead-letter it.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket

from models.artifact import now_iso
from streams.control.model_events import TOPIC
from streams.control.rejects import preview
from streams.control.routing import InvalidEvent, ModelEvent, Route, fold, parse_event
from tonewatch.core.kafka_io import ensure_topics, iter_topic, producer
from tonewatch.core.settings import Settings

log = logging.getLogger(__name__)


def who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return socket.gethostname()


def publish(
    settings: Settings, model: str, version: int, event: str, *, reason: str = "", share: float | None = None,
    to: int | None = None,
) -> ModelEvent:
    """Validate and write one event; returns once the broker has it (acks=all)."""
    ev = ModelEvent.from_dict({"model": model, "version": version, "event": event, "share": share,
                               "reason": reason, "at": now_iso(), "by": who(), "to": to})
    topic = settings.kafka.topic(TOPIC)
    ensure_topics(settings.kafka, [topic])
    prod = producer(settings.kafka)
    try:
        prod.send(topic, key=model.encode(), value=json.dumps(ev.to_dict()).encode()).get(timeout=30)
    finally:
        prod.close()
    return ev


def history(settings: Settings, model: str | None = None) -> list[ModelEvent]:
    """Every event so far (of one model), in order per model; a bad record is logged and skipped."""
    events = []
    for r in iter_topic(settings.kafka, settings.kafka.topic(TOPIC), idle_timeout_s=3.0):
        try:
            ev = parse_event(r.value)
        except InvalidEvent as exc:
            log.warning("skipped model event %s:%s@%s: %s [%s]", r.topic, r.partition, r.offset, exc.reason,
                        preview(r.value))
            continue
        if model is None or ev.model == model:
            events.append(ev)
    return events


def current_routes(settings: Settings) -> dict[str, Route]:
    return fold(history(settings))


def previous_production(events: list[ModelEvent]) -> int | None:
    """The production version before the current one: what a plain ``rollback`` returns to."""
    route, chain = Route(), []
    for ev in events:
        before = route.production
        route = fold([ev], {ev.model: route})[ev.model]
        if route.production != before and route.production is not None:
            chain.append(route.production)
    return chain[-2] if len(chain) >= 2 else None
