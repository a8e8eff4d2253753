"""Topic names and their configs in one place, so producers, workers, the CLI and tests agree."""

from __future__ import annotations

from tonewatch.core.settings import Settings

INPUTS = ("news", "chat")  # read by the score stage (streams/score/stage.py), not by a Faust agent
NAMES = ("news", "chat", "scored", "trend-events", "trends", "alerts", "dead-letter", "model-events", "feedback")
# the notifier's own (tonewatch/notify/ledger.py creates it): one record per version of an incident, keyed by its
# id; not in NAMES, which the worker opens and may not read
INCIDENTS = "incidents"
# created with these configs (kafka_io.ensure_topics): Kafka keeps the latest correction per key, and the latest
# version of each incident, forever
CONFIGS: dict[str, dict[str, str]] = {"feedback": {"cleanup.policy": "compact"},
                                      "incidents": {"cleanup.policy": "compact"}}


def state_table(settings: Settings) -> str:
    """The windows agent's per-key state table."""
    return f"{settings.kafka.topic_prefix}-trend-state"


def state_changelog(settings: Settings) -> str:
    """The table's changelog topic, as Faust names it (``<app id>-<table>-changelog``)."""
    return f"{settings.kafka.group_id}-{state_table(settings)}-changelog"
