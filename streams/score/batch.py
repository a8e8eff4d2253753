"""One read of the input topics: its records per partition, each parsed or with the reason it is invalid."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import TopicPartition

from streams.records import InvalidMessage, Message, parse_message
from tonewatch.core.sections import ScoringSettings

log = logging.getLogger(__name__)

Records = dict[TopicPartition, list[Any]]  # what getmany returns
Batch = dict[TopicPartition, list[tuple[Any, "Message | str"]]]  # each record parsed, or why it is invalid
Offsets = dict[TopicPartition, int]  # per partition, the next offset to read


def parse_batch(records: Records, limits: ScoringSettings) -> Batch:
    """Each record with its message, or the reason it is invalid (the stage dead-letters those)."""
    batch: Batch = {}
    for tp, recs in records.items():
        items: list[tuple[Any, Message | str]] = []
        for r in recs:
            try:
                items.append((r, parse_message(r.value, limits)))
            except InvalidMessage as exc:
                items.append((r, exc.reason))
            except Exception as exc:  # a validator bug must not fail the batch
                log.exception("validation failed unexpectedly")
                items.append((r, f"validation failed: {exc}"))
        batch[tp] = items
    return batch
