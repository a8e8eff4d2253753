"""Offsets the windows agent's consumer never gets: transaction markers and aborted records.

With exactly-once, the score stage writes trend-events in transactions, and every transaction leaves a marker
in each partition it wrote: an offset that no record holds. Faust's commit rule as fixed here
(streams/score/offsets.py) waits for every offset, so it must know which ones will never come. The fetcher
knows: a fetch that moved the position from ``start`` to ``end`` returned every record in between that a
``read_committed`` consumer may see; the other offsets are absent. Why transactions:
docs/decisions/2026-12-07-exactly-once-trend-events.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from streams.score.fetch_wait import tune_worker_consumer


def absent_between(start: int, end: int, returned: Iterable[int]) -> list[int]:
    """Offsets in ``[start, end)`` that a fetch moving the position from ``start`` to ``end`` did not return."""
    got = set(returned)
    return [o for o in range(start, end) if o not in got]


class AbsentOffsets:
    """Absent offsets per watched partition, noted by the consumer's thread, taken by the commit rule."""

    def __init__(self, topics: Iterable[str] = ()) -> None:
        self.topics = frozenset(topics)
        self._lock = threading.Lock()  # Faust's consumer fetches in its own thread
        self._absent: dict[tuple[str, int], set[int]] = {}

    def note(self, topic: str, partition: int, offsets: Iterable[int]) -> None:
        if topic not in self.topics:
            return
        with self._lock:
            self._absent.setdefault((topic, partition), set()).update(offsets)

    def since(self, topic: str, partition: int, committed: int | None) -> set[int]:
        """The partition's absent offsets at or after ``committed``; those before it are forgotten."""
        with self._lock:
            offsets = self._absent.get((topic, partition))
            if not offsets:
                return set()
            if committed is not None:
                offsets.difference_update([o for o in offsets if o < committed])
            return set(offsets)


def track_absent_offsets(absent: AbsentOffsets) -> None:
    """Wrap aiokafka's ``FetchResult.getall``, which Faust's ``getmany`` drains; refuse loudly if it is gone."""
    from aiokafka.consumer.fetcher import FetchResult

    original = getattr(FetchResult, "getall", None)
    if original is None:
        raise RuntimeError("aiokafka's FetchResult.getall is gone: review streams/windows/absent.py")
    if getattr(original, "tonewatch_absent", None) is not None:  # wrapped by an earlier app: note here now
        original.tonewatch_absent = absent
        return

    def getall(self: Any, max_records: int | None = None) -> list[Any]:
        absent: AbsentOffsets = getall.tonewatch_absent  # type: ignore[attr-defined]
        records = self._partition_records  # its next_fetch_offset is the consumer's position before and after
        start = None if records is None else records.next_fetch_offset
        got: list[Any] = original(self, max_records)
        if records is not None and start is not None and records.next_fetch_offset - start > len(got):
            tp = self._topic_partition
            absent.note(tp.topic, tp.partition, absent_between(start, records.next_fetch_offset,
                                                               (m.offset for m in got)))
        return got

    getall.tonewatch_absent = absent  # type: ignore[attr-defined]
    FetchResult.getall = getall


def read_committed() -> None:
    """Faust's worker consumer reads only committed records (Faust sets that only in its own exactly-once mode)."""
    tune_worker_consumer(_isolation_level="read_committed")
