"""The score stage's aligner: a batch cut at the event time every unfinished partition has reached.

The rule is the pure :func:`streams.score.align.keep_counts`; this applies it to a read batch and seeks
each partition cut short back to its first record left out, so nothing is skipped.
"""

from __future__ import annotations

from typing import Protocol

from aiokafka import TopicPartition

from streams.records import Message
from streams.score.align import keep_counts
from streams.score.batch import Batch


class Positions(Protocol):
    """A consumer's view of its partitions (the reader's, or a test's fake)."""

    def highwater(self, tp: TopicPartition) -> int | None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...


class Aligner:
    def __init__(self, positions: Positions) -> None:
        self.positions = positions

    def align(self, batch: Batch) -> Batch:
        """The batch's leading records up to the horizon; a partition cut short is read again from its cut."""
        positions = self.positions
        times = {tp: [m.epoch if isinstance(m, Message) else None for _, m in items] for tp, items in batch.items()}
        unfinished = {tp for tp, items in batch.items()
                      if (high := positions.highwater(tp)) is not None and high > items[-1][0].offset + 1}
        for tp, n in keep_counts(times, unfinished).items():
            if n < len(batch[tp]):
                positions.seek(tp, batch[tp][n][0].offset)
                batch[tp] = batch[tp][:n]
        return {tp: items for tp, items in batch.items() if items}
