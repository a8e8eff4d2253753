"""Which idle keys may leave the windows table: pure, driven by the watermark (event time), never the clock.

A key with no open window and no open alert expires ``ttl_s`` of event time after its last closed window
(and not before its cooldown ends). Each trend-events partition keeps an :class:`ExpiryIndex` of such keys;
the windows agent asks it, whenever the watermark moves, for the keys due, and deletes them with a
changelog tombstone. Why event time: a replay at any speed evicts the same keys at the same point of the
feed, so its windows and alerts stay the same. docs/event-time.md#idle-keys.
"""

from __future__ import annotations

import heapq

from streams.windows.detector import KeyState


def expires_at(state: KeyState, ttl_s: float) -> float | None:
    """The watermark from which the key may be deleted; None while it has an open window or fires (it
    must resolve first), or when eviction is off (``ttl_s`` 0)."""
    if ttl_s <= 0 or state.windows or state.firing is not None:
        return None
    last = state.closed_until if state.closed_until is not None else state.watermark
    if last is None:
        return -float("inf")  # nothing ever counted: an empty state holds nothing worth keeping
    expiry = last + ttl_s
    return expiry if state.cooldown_until is None else max(expiry, state.cooldown_until)


class ExpiryIndex:
    """Keys of one partition that may expire, by expiry: a min-heap of (expiry, key) with lazy deletion.

    Setting a key's expiry pushes an entry and leaves its older one in the heap, skipped when popped; the
    heap is rebuilt once stale entries outnumber live ones, so each change costs O(log n) amortised and
    a batch pays only for the keys it touches and the keys due.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._expiry: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    @property
    def entries(self) -> int:
        """Heap entries, stale ones included: what the index costs in memory."""
        return len(self._heap)

    def set(self, key: str, expiry: float | None) -> None:
        """The key's expiry, or None: it may not expire (open windows, firing) or has left the table."""
        if expiry is None:
            self._expiry.pop(key, None)
        elif self._expiry.get(key) != expiry:
            self._expiry[key] = expiry
            heapq.heappush(self._heap, (expiry, key))
        if len(self._heap) > 2 * len(self._expiry) + 64:
            self._heap = [(e, k) for k, e in self._expiry.items()]
            heapq.heapify(self._heap)

    def due(self, watermark: float) -> list[str]:
        """Keys whose expiry the watermark has reached, earliest first (ties by key: the same order in every
        replay), taken out of the index."""
        out: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= watermark:
            expiry, key = heapq.heappop(heap)
            if self._expiry.get(key) == expiry:
                del self._expiry[key]
                out.append(key)
        return out
