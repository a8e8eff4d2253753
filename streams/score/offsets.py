"""Which offset a worker may commit: a fix for faust-streaming 0.15's ``Consumer._new_offset``.

Why, and what it changes: docs/decisions/2026-12-07-offset-commit-fix.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.windows.absent import AbsentOffsets

log = logging.getLogger(__name__)


def committable(acked: Iterable[int], committed: int | None, in_flight: Iterable[int] = (),
                absent: Iterable[int] = ()) -> tuple[int | None, list[int]]:
    """The offset to commit (or None) and the acknowledged offsets still waiting after it.

    ``committed`` is the next offset to read (Kafka's convention); ``in_flight`` are offsets delivered
    to an agent and not yet acknowledged: the commit never reaches the lowest of them. Faust never
    forgets the second copy of a record it delivered twice (its ack skips the bookkeeping when the
    offset is already acknowledged), so an offset both acknowledged and in flight counts as done.
    ``absent`` offsets hold no record the consumer can get (transaction markers, aborted records:
    streams/windows/absent.py): they count as done too.
    """
    waiting = sorted({o for o in acked if committed is None or o >= committed})
    # a re-read copy of an acknowledged record is not waited for: the first copy's output stands
    done = set(waiting) | {o for o in absent if committed is None or o >= committed}
    start = committed if committed is not None else (waiting[0] if waiting else None)
    if start is None or start not in done:
        return None, waiting
    limit = min((o for o in in_flight if o not in done), default=None)
    end = start
    while end in done and (limit is None or end < limit):
        end += 1
    if end == start:
        return None, waiting
    return end, [o for o in waiting if o >= end]


def in_flight(consumer: Any, tp: Any) -> list[int]:
    """Offsets delivered to an agent and not yet acknowledged; a re-read copy of a committed one does not count."""
    committed = consumer._committed_offset[tp]
    return [m.offset for m in list(consumer._unacked_messages)
            if m.tp == tp and (committed is None or m.offset >= committed)]


def _new_offset(self: Any, tp: Any) -> int | None:
    """Faust's method with the rule above; Faust's own gaps are dropped, so a hole holds the commit back."""
    self._gap[tp].clear()
    acked = self._acked[tp]
    absent = _new_offset.absent.since(tp.topic, tp.partition, self._committed_offset[tp])  # type: ignore[attr-defined]
    if not acked and not absent:
        return None
    offset, rest = committable(acked, self._committed_offset[tp], in_flight(self, tp), absent)
    acked[:] = rest
    self._acked_index[tp] = set(rest)
    return offset


def patch_new_offset(absent: AbsentOffsets) -> None:
    """Replace ``Consumer._new_offset``; refuse loudly if Faust no longer has it (the fix needs review)."""
    from faust.transport.consumer import Consumer

    if not hasattr(Consumer, "_new_offset"):
        raise RuntimeError("faust.transport.consumer.Consumer._new_offset is gone: review streams/score/offsets.py")
    _new_offset.absent = absent  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def hole(acked: Iterable[int], committed: int | None, in_flight: Iterable[int] = (), read: int | None = None,
         absent: Iterable[int] = ()) -> int | None:
    """The committed offset when it holds the commit back for good: neither acknowledged nor in flight,
    though the consumer has moved past it (``read``: the last offset it delivered, or later ones acked).

    Records of a partition reach agents in order, so a record missing behind delivered ones was dropped.
    """
    if committed is None:
        return None
    acked = set(acked)
    if committed in acked or committed in set(in_flight) or committed in set(absent):
        return None
    if (read is not None and read > committed) or any(o > committed for o in acked):
        return committed
    return None


@dataclass
class _Seen:
    offset: int
    ticks: int = 1
    seeks: int = 0


@dataclass
class HoleHealer:
    """Decides, once a tick, to re-read a partition from a hole, or after ``max_seeks`` to commit over it."""

    settle_ticks: int = 2  # a hole seen this many ticks in a row is not a commit about to happen
    max_seeks: int = 4
    stuck_ticks: int = 6  # a commit that has not moved for this many ticks with records waiting is logged
    _seen: dict[Any, _Seen] = field(default_factory=dict)
    _held: dict[Any, tuple[int | None, int]] = field(default_factory=dict)  # committed offset, ticks unchanged

    def held(self, tp: Any, committed: int | None, waiting: bool) -> bool:
        """Whether to report ``tp``'s commit as stuck now (every ``stuck_ticks`` while it stays so)."""
        last, ticks = self._held.get(tp, (None, 0))
        ticks = ticks + 1 if waiting and committed == last else 0
        self._held[tp] = (committed, ticks)
        return ticks > 0 and ticks % self.stuck_ticks == 0

    def tick(self, holes: dict[Any, int | None]) -> list[tuple[str, Any, int]]:
        """``holes``: per partition, :func:`hole`'s answer now. Returns ("seek" | "skip", partition, offset)."""
        actions: list[tuple[str, Any, int]] = []
        for tp, offset in holes.items():
            seen = self._seen.get(tp)
            if offset is None:
                self._seen.pop(tp, None)
                continue
            if seen is None or seen.offset != offset:
                self._seen[tp] = _Seen(offset)
                continue
            seen.ticks += 1
            if seen.ticks < self.settle_ticks:
                continue
            seen.ticks = 0
            if seen.seeks < self.max_seeks:
                seen.seeks += 1
                actions.append(("seek", tp, offset))
            else:
                del self._seen[tp]
                actions.append(("skip", tp, offset))
        for tp in set(self._seen) - set(holes):
            del self._seen[tp]
        return actions


async def heal(consumer: Any, healer: HoleHealer) -> list[tuple[str, Any, int]]:
    """One tick on a live Faust consumer: seek back to holes, or commit over one that never fills."""
    absent = _new_offset.absent  # type: ignore[attr-defined]
    holes = {tp: hole(consumer._acked[tp], consumer._committed_offset[tp], in_flight(consumer, tp),
                      consumer._read_offset[tp], absent.since(tp.topic, tp.partition, consumer._committed_offset[tp]))
             for tp in consumer.assignment() if consumer.app.topics.acks_enabled_for(tp.topic)}
    for tp in holes:
        committed = consumer._committed_offset[tp]
        if healer.held(tp, committed, committed is not None and consumer.highwater(tp) > committed):
            flying = in_flight(consumer, tp)
            log.warning("commit of %s held at %s for %d ticks: last read %s, %d acked (lowest %s), %d in flight "
                        "(lowest %s), highwater %s", tp, committed, healer.stuck_ticks, consumer._read_offset[tp],
                        len(consumer._acked[tp]), min(consumer._acked[tp], default=None), len(flying),
                        min(flying, default=None), consumer.highwater(tp))
    actions = healer.tick(holes)
    for action, tp, offset in actions:
        later = [o for o in consumer._acked[tp] if o > offset]
        if action == "seek" or not later:  # no record beyond it was acknowledged: nothing proves it absent
            log.warning("offset %s of %s never reached an agent (last read %s, %d acked after it, %d in flight): "
                        "reading the partition again from it", offset, tp, consumer._read_offset[tp], len(later),
                        len(in_flight(consumer, tp)))
            await consumer.seek(tp, offset)
        else:
            first = min(later)
            log.warning("offsets %s-%s of %s are absent after %d re-reads (transaction markers or deleted "
                        "records): committing over them", offset, first - 1, tp, healer.max_seeks)
            consumer._acked[tp].extend(range(offset, first))
            consumer._acked_index[tp].update(range(offset, first))
    return actions
