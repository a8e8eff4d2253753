"""Recently scored message ids, so one worker never scores the same id twice.

Faust re-delivers records fetched while a worker starts (it seeks back to the committed offsets
once table recovery ends), and producers retry: both surface as the same id again, seconds apart.
A bounded LRU per worker catches those; a redelivery after a crash reaches another process and
stays at-least-once (documented; exactly-once across crashes is still open work).
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """Bounded, insertion-ordered set: memory stays flat however long the worker runs."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def clear(self) -> None:
        self._ids.clear()
