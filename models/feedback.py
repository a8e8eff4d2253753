"""Analyst feedback: corrected labels on ``<prefix>.feedback``, the durable input of the retrain job.

The topic is compacted and keyed by ``model|message_id``, so Kafka keeps the latest correction of
each message forever and a reader folds the log the same way (last record per key wins).
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.data import Split, norm_text
from models.labels import LABELS
from tonewatch.core.errors import InvalidInput
from tonewatch.core.settings import Settings

TOPIC = "feedback"
Source = Literal["news", "chat"]


class FeedbackError(InvalidInput):
    """Feedback that cannot be stored: unknown model or label, unknown message without a text."""


class Feedback(BaseModel):
    """One analyst correction."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    message_id: str = Field(min_length=1, max_length=128)
    model: str
    label: str
    text: str = Field(min_length=1)
    by: str = Field(min_length=1, max_length=200)
    at: datetime
    alert_id: str | None = None
    note: str | None = Field(None, max_length=2000)
    # the scored message's source; None on records stored before issue #29 (they count as news in retraining)
    source: Source | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)

    @property
    def key(self) -> str:
        return f"{self.model}|{self.message_id}"


def canonical_label(model: str, label: str) -> str:
    """The model's own spelling of ``label`` (any case), or a :class:`FeedbackError` naming the choices."""
    if model not in LABELS:
        raise FeedbackError(f"unknown model '{model}' (known: {', '.join(LABELS)})")
    by_lower = {lab.lower(): lab for lab in LABELS[model]}
    found = by_lower.get(label.strip().lower())
    if found is None:
        raise FeedbackError(f"label '{label}' is not one of {model}'s labels: {', '.join(LABELS[model])}")
    return found


def make_feedback(
    *, message_id: str, model: str, label: str, text: str | None, by: str, at: datetime | None = None,
    alert_id: str | None = None, note: str | None = None, source: str | None = None,
) -> Feedback:
    """A validated record; ``text`` must be known (given, or looked up from the scored topic by the caller)."""
    label = canonical_label(model, label)
    if not text:
        raise FeedbackError(f"message '{message_id}' is not in the scored topic: give its text with --text")
    try:
        return Feedback(message_id=message_id, model=model, label=label, text=text, by=by,
                        at=at or datetime.now(UTC), alert_id=alert_id, note=note,
                        source=source)  # pydantic checks the literal: "blog" is a FeedbackError
    except ValidationError as exc:
        first = exc.errors()[0]
        raise FeedbackError(f"invalid field '{'.'.join(map(str, first['loc']))}': {first['msg']}") from exc


class ScoredMessage(NamedTuple):
    """What a correction needs from the scored record: its text (masked for chat, as stored) and source."""

    text: str
    source: str | None


def feedback_for_message(
    lookup: Callable[[set[str]], dict[str, ScoredMessage]], *, message_id: str, model: str, label: str, by: str,
    text: str | None = None, source: str | None = None, note: str | None = None,
) -> Feedback:
    """``tonewatch feedback add``: text and source from the scored record unless given (given ones win).

    ``lookup`` (the scored-topic scan) runs only when the text is not given, and after the label is checked.
    """
    canonical_label(model, label)
    if not text:
        found = lookup({message_id}).get(message_id)
        if found is not None:
            text, source = found.text, source or found.source
    return make_feedback(message_id=message_id, model=model, label=label, text=text, by=by, note=note,
                         source=source)


def latest(records: Iterable[Feedback]) -> list[Feedback]:
    """One record per ``model|message_id``, the last one read (what compaction keeps)."""
    out: dict[str, Feedback] = {}
    for fb in records:
        out.pop(fb.key, None)  # re-insert so the order is that of the latest corrections
        out[fb.key] = fb
    return list(out.values())


def as_split(records: Iterable[Feedback], model: str) -> Split:
    """Texts and label indices of one model's feedback, for training."""
    index = {lab: i for i, lab in enumerate(LABELS[model])}
    rows = [fb for fb in records if fb.model == model]
    return Split([fb.text for fb in rows], [index[fb.label] for fb in rows])


def sources_by_text(records: Iterable[Feedback], model: str) -> dict[str, str]:
    """The source of one model's corrected texts, by ``norm_text`` (the latest correction of a text wins)."""
    out: dict[str, str] = {}
    for fb in records:
        if fb.model == model:
            key = norm_text(fb.text)
            out.pop(key, None)
            if fb.source is not None:
                out[key] = fb.source
    return out


def write_csv(records: Iterable[Feedback], model: str, out: Path) -> int:
    """``text,label,source`` of one model, readable by ``tonewatch models evaluate --data``; returns the rows."""
    rows = [fb for fb in records if fb.model == model]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label", "source"])
        writer.writerows([fb.text, fb.label, fb.source or ""] for fb in rows)
    return len(rows)


# --- Kafka -------------------------------------------------------------------------------------------


def ensure_topic(settings: Settings) -> str:
    """Create the feedback topic compacted if missing (a plain topic would expire corrections)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from tonewatch.core.kafka_io import client_config

    name = settings.kafka.topic(TOPIC)
    admin = KafkaAdminClient(**client_config(settings.kafka), client_id="tonewatch-feedback")
    try:
        if name not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, settings.kafka.topic_partitions, 1,
                                              topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    return name


def publish(settings: Settings, records: list[Feedback]) -> None:
    """Write corrections, keyed for compaction; returns once Kafka acknowledged every one."""
    from tonewatch.core.kafka_io import producer

    topic = ensure_topic(settings)
    prod = producer(settings.kafka)
    try:
        for fb in records:
            prod.send(topic, key=fb.key.encode(), value=fb.model_dump_json().encode())
        prod.flush()
    finally:
        prod.close()


def read_feedback(settings: Settings) -> list[Feedback]:
    """Every stored correction, the latest per message and model."""
    from tonewatch.core.kafka_io import iter_topic

    return latest(Feedback.model_validate_json(r.value) for r in iter_topic(settings.kafka, settings.kafka.topic(TOPIC))
                  if r.value)


def scored_messages(settings: Settings, ids: set[str]) -> dict[str, ScoredMessage]:
    """Text (masked for chat, as stored) and source of scored messages, by id."""
    from tonewatch.core.kafka_io import iter_topic

    found: dict[str, ScoredMessage] = {}
    for r in iter_topic(settings.kafka, settings.kafka.topic("scored")):
        try:
            rec = json.loads(r.value)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("id") in ids:
            found[rec["id"]] = ScoredMessage(rec.get("text", ""), rec.get("source"))
    return found


def find_alert(settings: Settings, alert_id: str) -> dict[str, Any]:
    """The latest firing record of an alert (it carries the messages that drove it)."""
    from tonewatch.core.kafka_io import iter_topic

    found: dict[str, Any] | None = None
    for r in iter_topic(settings.kafka, settings.kafka.topic("alerts")):
        try:
            rec = json.loads(r.value)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("id") == alert_id and (rec.get("status") == "firing" or not found):
            found = rec
    if found is None:
        raise FeedbackError(f"alert '{alert_id}' is not in {settings.kafka.topic('alerts')}")
    return found


def alert_feedback(alert: dict[str, Any], label: str, by: str, note: str | None = None) -> list[Feedback]:
    """A reply to an alert: its top messages all get ``label`` for the sentiment model."""
    messages = alert.get("top_messages") or []
    if not messages:
        raise FeedbackError(f"alert '{alert.get('id')}' carries no messages to label")
    return [make_feedback(message_id=m["message_id"], model="sentiment", label=label, text=m.get("text"), by=by,
                          alert_id=alert.get("id"), note=note, source=m.get("source")) for m in messages]
