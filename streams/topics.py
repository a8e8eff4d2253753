"""The Faust topic handles of the windows agent; names and configs live in tonewatch.core.topics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tonewatch.core.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Handles to the topics the windows agent reads and writes through Faust (values are raw bytes; JSON
    is encoded explicitly). The score stage writes its topics with its own producer, by name."""

    trend_events: Any
    trends: Any
    alerts: Any
    dead_letter: Any


def declare(app: Any, settings: Settings) -> Topics:
    def topic(*names: str) -> Any:
        return app.topic(
            *(settings.kafka.topic(n) for n in names),
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
            partitions=settings.kafka.topic_partitions, internal=True,
        )

    return Topics(
        trend_events=topic("trend-events"),
        trends=topic("trends"),
        alerts=topic("alerts"),
        dead_letter=topic("dead-letter"),
    )
