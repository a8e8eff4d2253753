"""Event-time alignment of one batch across input partitions, as a pure function.

A consumer batch holds whatever each partition had buffered: after an outage that can be all of
``chat`` up to now and only the first minutes of ``news``'s backlog. Lateness is judged per partition
(streams/score/clock.py), so this is not needed for correct results; it keeps a batch's trend partials
close together in event time, as Kafka Streams picks the record with the lowest timestamp: a batch keeps
only what is no later than the earliest "frontier" among partitions with more records still to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import TypeVar

K = TypeVar("K")


def horizon(times: Mapping[K, Sequence[float | None]], unfinished: Set[K]) -> float | None:
    """The latest event time every partition has reached: the lowest of the batch's highest times among
    ``unfinished`` partitions (those with more records waiting). None: nothing limits the batch."""
    frontiers = [max(t for t in times[k] if t is not None) for k in unfinished
                 if k in times and any(t is not None for t in times[k])]
    return min(frontiers) if frontiers else None


def keep_counts(times: Mapping[K, Sequence[float | None]], unfinished: Set[K]) -> dict[K, int]:
    """How many leading records of each partition the batch keeps (a prefix, so offsets stay contiguous).

    ``None`` times (invalid records: dead-lettered, no event time) never cut a partition. The partition
    that sets the horizon keeps all its records, so every batch makes progress.
    """
    limit = horizon(times, unfinished)
    counts = {}
    for k, ts in times.items():
        n = len(ts)
        if limit is not None:
            n = next((i for i, t in enumerate(ts) if t is not None and t > limit), len(ts))
        counts[k] = n
    return counts
