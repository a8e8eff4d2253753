"""Replay a JSONL feed onto the news/chat topics, keeping each message's event time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tonewatch.core.kafka_io import ensure_topics, producer
from tonewatch.core.settings import Settings


@dataclass
class ReplayReport:
    sent: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


def _route(line: str, settings: Settings) -> tuple[str, bytes | None, int | None]:
    """Topic by ``source``; anything unparseable still goes in (to news) so the worker dead-letters it."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return settings.kafka.topic("news"), None, None
    if not isinstance(data, dict):
        return settings.kafka.topic("news"), None, None
    source = data.get("source")
    topic = settings.kafka.topic("chat" if source == "chat" else "news")
    key = str(data["id"]).encode() if data.get("id") is not None else None
    ts_ms = None
    if isinstance(data.get("ts"), str):
        try:
            ts_ms = int(datetime.fromisoformat(data["ts"].replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            ts_ms = None
    return topic, key, ts_ms


def replay(settings: Settings, path: Path, speed: float | None = None) -> ReplayReport:
    """Send every non-blank line as-is; validation is the worker's job, in one place.

    With ``speed`` the feed is paced in event time (60 = an hour in a minute), as a live
    source would arrive; without it, as fast as the broker takes it.
    """
    ensure_topics(settings, [settings.kafka.topic("news"), settings.kafka.topic("chat")])
    prod = producer(settings)
    report = ReplayReport()
    first_ts: int | None = None
    started = time.monotonic()
    try:
        with path.open("rb") as fh:
            for raw in fh:
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                topic, key, ts_ms = _route(line.decode("utf-8", errors="replace"), settings)
                if speed and ts_ms is not None:
                    first_ts = ts_ms if first_ts is None else first_ts
                    delay = (ts_ms - first_ts) / 1000 / speed - (time.monotonic() - started)
                    if delay > 0:
                        time.sleep(delay)
                prod.send(topic, value=line, key=key, timestamp_ms=ts_ms)
                report.sent += 1
                report.per_topic[topic] = report.per_topic.get(topic, 0) + 1
        prod.flush()
    finally:
        prod.close()
    return report
