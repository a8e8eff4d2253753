"""Replay a JSONL feed onto the news/chat topics, keeping each message's event time; then, optionally, wait
until the worker has caught up and count what came out of it (``tonewatch replay``).

Unpaced (the default) the feed goes as fast as the broker takes it: the worker judges lateness per input
partition by event time, so the outcome does not depend on the pace. ``speed`` paces it in event time
instead, as a live source would arrive (60 = an hour of feed in a minute).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.consumer import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from tonewatch.core.kafka_io import READER, client_config, ensure_topics, offsets_consumer, producer
from tonewatch.core.settings import Settings
from tonewatch.core.topics import INPUTS

log = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    sent: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What the worker wrote since the replay began: scored records, and dead letters by stage."""

    scored: int
    dead_by_stage: dict[str, int]

    @property
    def dead(self) -> int:
        return sum(self.dead_by_stage.values())


# --- sending -------------------------------------------------------------------------------------------------------


def _event_time_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _route(line: str, settings: Settings) -> tuple[str, bytes | None, int | None]:
    """Topic by ``source``; anything unparseable still goes in (to news) so the worker dead-letters it."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return settings.kafka.topic("news"), None, None
    if not isinstance(data, dict):
        return settings.kafka.topic("news"), None, None
    topic = settings.kafka.topic("chat" if data.get("source") == "chat" else "news")
    key = str(data["id"]).encode() if data.get("id") is not None else None
    return topic, key, _event_time_ms(data.get("ts"))


def pacing_delay(ts_ms: int | None, first_ts_ms: int | None, speed: float | None, elapsed_s: float) -> float:
    """Seconds to wait before sending a message with event time ``ts_ms``: at ``speed`` times real time, its
    offset from the feed's first event time, less the time already spent. 0 unpaced, for a message without
    an event time and for one behind the pace (a late message goes at once)."""
    if not speed or ts_ms is None or first_ts_ms is None:
        return 0.0
    return max(0.0, (ts_ms - first_ts_ms) / 1000 / speed - elapsed_s)


def count_messages(path: Path) -> int:
    """The lines ``replay`` sends: every non-blank one."""
    with path.open("rb") as fh:
        return sum(1 for raw in fh if raw.strip())


def replay(
    settings: Settings, path: Path, speed: float | None = None, *, progress: Callable[[int], object] | None = None
) -> ReplayReport:
    """Send every non-blank line as-is; validation is the worker's job, in one place.

    With ``speed`` the feed is paced in event time (60 = an hour in a minute), as a live source would
    arrive; without it, as fast as the broker takes it. ``progress`` is called with 1 per message sent.
    """
    ensure_topics(settings.kafka, [settings.kafka.topic(t) for t in INPUTS])
    prod = producer(settings.kafka)
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
                first_ts = ts_ms if first_ts is None else first_ts
                if (delay := pacing_delay(ts_ms, first_ts, speed, time.monotonic() - started)) > 0:
                    time.sleep(delay)
                prod.send(topic, value=line, key=key, timestamp_ms=ts_ms)
                report.sent += 1
                report.per_topic[topic] = report.per_topic.get(topic, 0) + 1
                if progress is not None:
                    progress(1)
        prod.flush()
    finally:
        prod.close()
    return report


# --- waiting for the worker ----------------------------------------------------------------------------------------


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _end_offsets(consumer: KafkaConsumer, topic: str, tries: int = 10) -> dict[TopicPartition, int]:
    """End offset per partition ({} for a topic not there yet); kafka-python's lookup fails
    (AttributeError) while a new topic has no leader, so it is retried for a few seconds."""
    for attempt in range(tries):
        try:
            tps = _partitions(consumer, topic)
            return dict(consumer.end_offsets(tps)) if tps else {}
        except (AttributeError, KeyError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
    return {}


def behind(targets: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]) -> int:
    """Records up to ``targets`` (an end offset per partition) that a group has not committed yet."""
    return sum(max(end - max(committed.get(tp, 0), 0), 0) for tp, end in targets.items())


class CatchUp:
    """What the worker still has to process of a replay, per topic (short names), each time it is called.

    The score stage's group must commit the input topics up to their ends when sending ended; then the
    windows agent's group must commit trend-events up to its end at the moment the inputs were done. Not
    "lag 0": trend-events also carries the score stage's periodic watermark marks, so its end moves on by
    itself, and other producers may keep feeding the inputs.
    """

    def __init__(self, settings: Settings, admin: KafkaAdminClient, consumer: KafkaConsumer) -> None:
        self.kafka, self.admin, self.consumer = settings.kafka, admin, consumer
        self.inputs = {t: _end_offsets(consumer, self.kafka.topic(t)) for t in INPUTS}
        self.trends: dict[TopicPartition, int] | None = None  # fixed once the inputs are done

    def _committed(self, group: str, targets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        if not targets:
            return {}
        try:
            offsets = self.admin.list_consumer_group_offsets(group, partitions=list(targets))
        except KafkaError as exc:  # a fresh broker's group coordinator, still loading: nothing known to be done
            if not exc.retriable:
                raise
            log.info("waiting for the group coordinator (%s)", type(exc).__name__)
            return {}
        return {tp: meta.offset for tp, meta in offsets.items()}

    def __call__(self) -> dict[str, int]:
        kafka = self.kafka
        left = {t: behind(ends, self._committed(kafka.score_group_id, ends)) for t, ends in self.inputs.items()}
        trends = self.trends if self.trends is not None else _end_offsets(self.consumer, kafka.topic("trend-events"))
        if not any(left.values()) and self.trends is None:
            self.trends = trends  # read after the inputs were seen done: it holds everything they led to
        left["trend-events"] = behind(trends, self._committed(kafka.group_id, trends))
        return left


def wait_until_caught_up(
    lag: Callable[[], Mapping[str, int]],
    timeout_s: float,
    interval_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> dict[str, int]:
    """Poll ``lag`` until every topic's is 0 or ``timeout_s`` passes; returns the last lag seen."""
    deadline = clock() + timeout_s
    while True:
        last = dict(lag())
        if not any(last.values()) or clock() >= deadline:
            return last
        sleep(min(interval_s, max(deadline - clock(), 0.0)))


def wait_for_pipeline(settings: Settings, timeout_s: float, interval_s: float = 1.0) -> dict[str, int]:
    """Wait until the worker has processed everything on the input topics now, and the trend events that led to
    (``CatchUp``); returns what is left per topic (all 0 when done). One admin client and one consumer throughout."""
    admin = KafkaAdminClient(**client_config(settings.kafka), client_id="tonewatch-replay")
    consumer = offsets_consumer(settings.kafka)
    try:
        return wait_until_caught_up(CatchUp(settings, admin, consumer), timeout_s, interval_s)
    finally:
        consumer.close()
        admin.close()


# --- what came out -------------------------------------------------------------------------------------------------


def output_marks(settings: Settings) -> dict[TopicPartition, int]:
    """End offsets of the scored and dead-letter topics now: where a replay's output will begin."""
    consumer = offsets_consumer(settings.kafka)
    try:
        return {**_end_offsets(consumer, settings.kafka.topic("scored")),
                **_end_offsets(consumer, settings.kafka.topic("dead-letter"))}
    finally:
        consumer.close()


def _read_since(consumer: KafkaConsumer, ends: Mapping[TopicPartition, int], marks: Mapping[TopicPartition, int],
                timeout_s: float = 60.0) -> list[bytes]:
    """The values between ``marks`` (0 for a partition created since) and ``ends``, and nothing else."""
    nxt = {tp: marks.get(tp, 0) for tp, end in ends.items() if marks.get(tp, 0) < end}
    if not nxt:
        return []
    consumer.assign(list(nxt))
    for tp, offset in nxt.items():
        consumer.seek(tp, offset)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while any(nxt[tp] < ends[tp] for tp in nxt) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                if r.offset < ends[tp]:
                    values.append(r.value)
                nxt[tp] = r.offset + 1
        # past offsets no record holds (transaction markers): the position after a poll
        nxt.update({tp: max(nxt[tp], consumer.position(tp)) for tp in nxt})
    return values


def stage_counts(values: Iterable[bytes]) -> dict[str, int]:
    """Dead letters per stage, in name order; a record that is not a JSON object with a stage counts as '?'."""
    stages: Counter[str] = Counter()
    for value in values:
        try:
            record = json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        stages[str(record.get("stage", "?")) if isinstance(record, dict) else "?"] += 1
    return dict(sorted(stages.items()))


def outputs_since(settings: Settings, marks: Mapping[TopicPartition, int]) -> Outcome:
    """Scored records and dead letters by stage written since ``marks`` (only the new ones are read: offsets alone
    would count transaction markers as records)."""
    consumer = KafkaConsumer(**client_config(settings.kafka), **READER, group_id=None)
    try:
        scored = _end_offsets(consumer, settings.kafka.topic("scored"))
        dead = _end_offsets(consumer, settings.kafka.topic("dead-letter"))
        n_scored = len(_read_since(consumer, scored, marks))
        return Outcome(n_scored, stage_counts(_read_since(consumer, dead, marks)))
    finally:
        consumer.close()


# --- one line for a person -----------------------------------------------------------------------------------------


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={n}" for k, n in counts.items())


def format_sent(report: ReplayReport, prefix: str) -> str:
    """``sent 1126 messages (news=701, chat=425)``: topics by their short names."""
    per_topic = {t.removeprefix(f"{prefix}."): n for t, n in report.per_topic.items()}
    noun = "message" if report.sent == 1 else "messages"
    return f"sent {report.sent} {noun}" + (f" ({_counts(per_topic)})" if per_topic else "")


def format_summary(report: ReplayReport, prefix: str, outcome: Outcome) -> str:
    """``sent 1126 messages (news=701, chat=425), scored 1120, dead-lettered 6 (late=3, validate=3)``."""
    dead = f"dead-lettered {outcome.dead}" + (f" ({_counts(outcome.dead_by_stage)})" if outcome.dead else "")
    return f"{format_sent(report, prefix)}, scored {outcome.scored}, {dead}"


def format_timeout(timeout_s: float, lag: Mapping[str, int], summary: str) -> str:
    """The refusal when the worker has not caught up: what is still waiting, and what came out so far."""
    return (f"the pipeline has not caught up after {timeout_s:g}s (not yet processed: {_counts(lag)}; "
            f"is a worker running on these topics?); so far: {summary}")
