"""The windows agent folds each trend-events partition in offset order, without holes.

Faust can drop a record it fetched without delivering it (``Consumer._drain_messages`` gives up a delivery
when the flow is suspended, as at a restart, and still moves its read offset past the record). The offset
healer (streams/score/offsets.py) reads such a record again seconds later, but by then the marks records
after it have moved event time on and closed its window: its messages left their window for good
(test_event_time's outage run, about 1 run in 9). So a record is folded only once every offset before it in
its partition was folded or holds no record (a transaction marker: streams/windows/absent.py); at a hole the
partition is read again from the hole, and what came after it waits for its turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

REWIND_AFTER_S = 2.0  # records past a hole we already went back for are the old read's, until this passes
MAX_REWINDS = 4  # after this many reads from the same hole it is taken as absent (the healer's rule)


@dataclass
class _Hole:
    offset: int
    rewinds: int
    at: float


class InOrder:
    """Per partition, the next offset to fold; ``committed(partition)`` (the group's committed offset) and
    ``absent(partition)`` (offsets that hold no record) come from the worker's consumer."""

    def __init__(self, committed: Callable[[int], int | None], absent: Callable[[int], set[int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.committed, self.absent, self.clock = committed, absent, clock
        self._next: dict[int, int] = {}
        self._holes: dict[int, _Hole] = {}

    def forget(self) -> None:
        """After a rebalance: another worker may have moved a partition on (its committed offset says where)."""
        self._next.clear()
        self._holes.clear()

    def admit(self, partition: int, offset: int) -> tuple[bool, int | None]:
        """Whether to fold the record now, and the offset to read the partition again from (None: no need).

        A record before the next offset is a copy read again: folded (the state skips what it holds)."""
        known = self._next.get(partition)
        if known is not None and offset <= known:  # the next one, or a copy: most records, no lookup needed
            return self._folded(partition, offset)
        committed = self.committed(partition)
        base = max((o for o in (known, committed) if o is not None), default=None)
        if base is None or offset <= base:
            return self._folded(partition, offset)
        absent = self.absent(partition)
        missing = next((o for o in range(base, offset) if o not in absent), None)
        if missing is None:
            return self._folded(partition, offset)
        hole = self._holes.get(partition)
        now = self.clock()
        if hole is not None and hole.offset == missing and now - hole.at < REWIND_AFTER_S:
            return False, None  # read before the rewind took effect: it comes again after the hole
        rewinds = hole.rewinds + 1 if hole is not None and hole.offset == missing else 1
        if rewinds > MAX_REWINDS:
            log.error("offset %d of trend-events partition %d never came after %d re-reads: folding on without it",
                      missing, partition, MAX_REWINDS)
            return self._folded(partition, offset)
        self._holes[partition] = _Hole(missing, rewinds, now)
        self._next[partition] = missing
        return False, missing

    def _folded(self, partition: int, offset: int) -> tuple[bool, int | None]:
        hole = self._holes.get(partition)
        if hole is not None and offset >= hole.offset:  # the hole is filled (a copy from before it is not)
            del self._holes[partition]
        self._next[partition] = max(self._next.get(partition, offset + 1), offset + 1)
        return True, None
