"""Event time per input partition: what is late, and the marks the windows agent's watermark is made of.

A message is late when it is older than its own partition's time (the latest event time read there before
it) minus the allowed lateness: that depends on the partition's order alone, never on how fast partitions
are read relative to each other. The time at each committed offset is committed with it, so a worker that
takes the partition over after a crash judges the same messages late. See
docs/decisions/2026-12-07-event-time-watermarks.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from streams.windows.watermark import Mark


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class PartitionClock:
    """Partition times, their values at offsets not yet committed, and since when each partition is idle."""

    def __init__(self, lateness_s: float, idle_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.lateness_s, self.idle_s, self._now = lateness_s, idle_s, now
        self.times: dict[str, float] = {}
        self._checkpoints: dict[str, list[tuple[int, float | None]]] = {}  # (next offset, time) not committed
        self._committed: dict[str, float | None] = {}
        self._caught_up: dict[str, float] = {}  # partition -> when it was first seen with nothing to read

    def admit(self, name: str, ts: float) -> bool:
        """Advance the partition's time; False when ``ts`` is later than allowed behind it."""
        current = self.times.get(name)
        if current is not None and ts < current - self.lateness_s:
            return False
        if current is None or ts > current:
            self.times[name] = ts
        return True

    def checkpoint(self, name: str, next_offset: int) -> None:
        """The partition's time once every record before ``next_offset`` is admitted."""
        self._checkpoints.setdefault(name, []).append((next_offset, self.times.get(name)))

    def peek(self, name: str, offset: int) -> str:
        """What to commit with ``offset``: the partition time reached there (nothing recorded yet)."""
        done = [t for o, t in self._checkpoints.get(name, []) if o <= offset]
        return json.dumps({"partition_time": done[-1] if done else self._committed.get(name)})

    def metadata(self, name: str, offset: int) -> str:
        """:meth:`peek`, recorded as committed: a rollback goes back to it."""
        value = self.peek(name, offset)
        self._checkpoints[name] = [(o, t) for o, t in self._checkpoints.get(name, []) if o > offset]
        self._committed[name] = json.loads(value)["partition_time"]
        return value

    def restore(self, name: str, metadata: str | None) -> None:
        """A partition (re)assigned: its time is the one committed with its offset (None for a fresh one)."""
        try:
            at = json.loads(metadata).get("partition_time") if metadata else None
        except (ValueError, AttributeError):
            at = None
        at = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
        self._committed[name] = at
        self._checkpoints.pop(name, None)
        self._caught_up.pop(name, None)
        if at is None:
            self.times.pop(name, None)
        else:
            self.times[name] = at

    def rollback(self) -> None:
        """After a failed batch: back to the committed times, as the reader goes back to the committed offsets."""
        for name in list(self.times):
            self.restore(name, json.dumps({"partition_time": self._committed.get(name)}))

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            for table in (self.times, self._checkpoints, self._committed, self._caught_up):
                table.pop(name, None)

    def caught_up(self, name: str, nothing_left: bool) -> None:
        """After a read: whether the partition has nothing more to read now."""
        if not nothing_left:
            self._caught_up.pop(name, None)
        else:
            self._caught_up.setdefault(name, self._now())

    def marks(self, names: Iterable[str]) -> dict[str, Mark]:
        now = self._now()
        return {n: Mark(self.times.get(n), n in self._caught_up and now - self._caught_up[n] >= self.idle_s)
                for n in names}
