"""``LiveModels``: the Models page's port on the CLI's own functions. Routing, promote and rollback are
``models.rollout.driver``'s (``tonewatch models status/promote/rollback``), feedback is ``models.feedback``'s
reader (``tonewatch retrain``'s input), drift PSI comes from the store's ``model_events`` rows, and shadow agreement
from the scored topic's newest records through the rollout gates' own counting (``models.rollout.gates.collect``).

The training-side modules are imported inside the methods: the console's start must not load them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tonewatch.console.models_port import ModelActionRefused, Row
from tonewatch.core.errors import ServiceError
from tonewatch.core.settings import Settings

if TYPE_CHECKING:
    from models.feedback import Feedback

# shadow agreement is judged on this many of the scored topic's newest records per partition
AGREEMENT_TAIL = 2000
CARD_CHARS = 64_000  # a card is a page of markdown; more is not a card


class LiveModels:
    """``drift`` reads the store (``PgConsoleStore.drift``); the rest talks to Kafka, Triton and the repository."""

    def __init__(self, settings: Settings, drift: Callable[[str], list[Row]]) -> None:
        self._settings = settings
        self._drift = drift

    def models(self) -> list[tuple[str, str]]:
        t = self._settings.triton
        return [(t.sentiment_model, "sentiment"), (t.topic_model, "topic")]

    def status(self, name: str) -> Row:
        from models.rollout.driver import status

        with _guard():
            return status(self._settings, name)

    def agreement(self, name: str, production: int, candidate: int) -> tuple[int, int]:
        from models.rollout.driver import label_field
        from models.rollout.gates import collect

        with _guard():
            records = tail_json(self._settings, self._settings.kafka.topic("scored"), AGREEMENT_TAIL)
        stats = collect(records, name, label_field(self._settings, name), production, candidate)
        return stats.agreements, stats.compared

    def drift(self, name: str) -> list[Row]:
        return self._drift(name)

    def card(self, name: str, version: int) -> str | None:
        from models.artifact import CARD, ArtifactError, inside

        try:  # the artifact's own path rule: no symlink out of it (a card must not show a host file)
            path = inside(self._version_dir(name, version), CARD, "the model card")
        except ArtifactError:
            return None
        return path.read_text(encoding="utf-8", errors="replace")[:CARD_CHARS] if path.is_file() else None

    def trained_at(self, name: str, version: int) -> datetime | None:
        from models.artifact import ArtifactError, read_manifest

        try:
            created = read_manifest(self._version_dir(name, version)).created
            at = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except (ArtifactError, ValueError, OSError):
            return None
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    def feedback(self) -> list[Feedback]:
        from models.feedback import read_feedback

        with _guard():
            return read_feedback(self._settings)

    def promote(self, name: str, version: int | None, reason: str) -> int:
        from models.rollout.driver import promote

        with _guard():
            return promote(self._settings, name, version, reason=reason)

    def rollback(self, name: str, to: int | None, reason: str) -> int:
        from models.rollout.driver import rollback

        with _guard():
            return rollback(self._settings, name, to, reason=reason)

    def _version_dir(self, name: str, version: int) -> Path:
        return self._settings.triton.model_repository / name / str(int(version))


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """The driver's refusals (no candidate, already production, an unservable version) as
    :class:`ModelActionRefused` (the page's 409); Kafka failing as a ServiceError (its 503), as Triton's do."""
    from kafka.errors import KafkaError

    from models.artifact import ArtifactError
    from models.rollout.driver import RolloutError

    try:
        yield
    except (RolloutError, ArtifactError) as exc:
        raise ModelActionRefused(str(exc)) from exc
    except KafkaError as exc:
        raise ServiceError(f"Kafka failed: {type(exc).__name__}: {exc}") from exc


def tail_json(settings: Settings, topic: str, per_partition: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The newest ``per_partition`` JSON objects of each partition (unreadable ones skipped), without a group."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    from tonewatch.core.kafka_io import READER, client_config

    consumer = KafkaConsumer(**client_config(settings.kafka), **READER, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    try:
                        value = json.loads(r.value)
                    except (TypeError, ValueError):
                        continue
                    if isinstance(value, dict):
                        out.append(value)
        return out
    finally:
        consumer.close()
