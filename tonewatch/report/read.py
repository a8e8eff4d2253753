"""The report's only broker contact: read the run's four topics up to their current end."""

from __future__ import annotations

from pathlib import Path

from tonewatch.core.kafka_io import read_json
from tonewatch.core.settings import Settings
from tonewatch.report.data import RunInput
from tonewatch.report.render import write_report


def read_run(settings: Settings) -> RunInput:
    return RunInput(
        scored=read_json(settings.kafka, settings.kafka.topic("scored")),
        trends=read_json(settings.kafka, settings.kafka.topic("trends")),
        alerts=read_json(settings.kafka, settings.kafka.topic("alerts")),
        dead=read_json(settings.kafka, settings.kafka.topic("dead-letter")),
    )


def report_from_topics(settings: Settings, out: Path, keys: int = 6) -> Path:
    """Read the configured topic prefix and write ``out/index.html``."""
    return write_report(read_run(settings), out, source=f"topics {settings.kafka.topic_prefix}.*", keys=keys)
