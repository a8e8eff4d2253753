"""Topic names and declarations in one place, so producers, workers and tests agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tonewatch.settings import Settings

INPUTS = ("news", "chat")  # read by the score stage (streams/score_stage.py), not by a Faust agent
NAMES = ("news", "chat", "scored", "trend-events", "trends", "alerts", "dead-letter", "model-events", "feedback")
# created with these configs (kafka_io.ensure_topics): Kafka keeps the latest correction per key, forever
CONFIGS: dict[str, dict[str, str]] = {"feedback": {"cleanup.policy": "compact"}}


def state_table(settings: Settings) -> str:
    """The windows agent's per-key state table."""
    return f"{settings.topic_prefix}-trend-state"


def state_changelog(settings: Settings) -> str:
    """The table's changelog topic, as Faust names it (``<app id>-<table>-changelog``)."""
    return f"{settings.group_id}-{state_table(settings)}-changelog"


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
            *(settings.topic(n) for n in names),
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
            partitions=settings.topic_partitions, internal=True,
        )

    return Topics(
        trend_events=topic("trend-events"),
        trends=topic("trends"),
        alerts=topic("alerts"),
        dead_letter=topic("dead-letter"),
    )
