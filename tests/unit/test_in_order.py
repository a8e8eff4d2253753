"""The windows agent folds a trend-events partition in offset order: a record Faust fetched and never delivered
is read again before anything after it is folded (streams/windows/in_order.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from streams.agents import fold_batches
from streams.windows.in_order import MAX_REWINDS, REWIND_AFTER_S, InOrder


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _order(committed: int | None = 100, absent: set[int] | None = None, clock: Clock | None = None) -> InOrder:
    return InOrder(lambda p: committed, lambda p: absent or set(), clock or Clock())


def test_consecutive_records_and_transaction_markers_fold_as_they_come() -> None:
    order = _order(absent={102, 105})
    assert [order.admit(0, o) for o in (100, 101, 103, 104, 106)] == [(True, None)] * 5


def test_a_record_after_a_hole_waits_and_the_partition_is_read_again_from_the_hole() -> None:
    clock = Clock()
    order = _order(absent={102}, clock=clock)
    assert [order.admit(0, o) for o in (100, 101, 103)] == [(True, None)] * 3
    assert order.admit(0, 105) == (False, 104)  # 104 holds a record that never came
    assert order.admit(0, 106) == (False, None)  # the old read's: it comes again after 104
    assert order.admit(1, 100) == (True, None)  # other partitions go on
    assert order.admit(0, 104) == (True, None)
    assert order.admit(0, 105) == (True, None)


def test_the_first_record_after_an_assignment_must_be_the_committed_one() -> None:
    order = _order(committed=217)
    assert order.admit(0, 218) == (False, 217)
    assert order.admit(0, 217) == (True, None)
    assert order.admit(0, 218) == (True, None)


def test_a_copy_read_again_folds_and_leaves_the_next_offset_alone() -> None:
    order = _order()
    assert [order.admit(0, o) for o in (100, 101, 102)] == [(True, None)] * 3
    assert order.admit(0, 101) == (True, None)  # the state skips what it already holds
    assert order.admit(0, 103) == (True, None)


def test_a_hole_that_never_fills_is_read_again_a_few_times_then_folded_over() -> None:
    clock = Clock()
    order = _order(clock=clock)
    for _ in range(MAX_REWINDS):
        assert order.admit(0, 101) == (False, 100)
        clock.now += REWIND_AFTER_S
    assert order.admit(0, 101) == (True, None)


def test_forget_after_a_rebalance_starts_from_the_committed_offset() -> None:
    committed = {0: 100}
    order = InOrder(lambda p: committed[p], lambda p: set(), Clock())
    assert order.admit(0, 100) == (True, None)
    committed[0] = 300  # another worker had the partition meanwhile
    order.forget()
    assert order.admit(0, 300) == (True, None)


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


class Redelivering:
    """Faust's stream: the first read of partition 0 lost offset 217; a rewind reads it again from there."""

    def __init__(self) -> None:
        self.batches = [[Event(Message(0, o)) for o in (218, 220)]]
        self.acked: list[int] = []
        self.rewinds: list[tuple[int, int]] = []

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True

    async def noack_take(self, take: int, within: float) -> AsyncIterator[list[Event]]:
        while self.batches:
            yield self.batches.pop(0)

    async def rewind(self, partition: int, offset: int) -> None:
        self.rewinds.append((partition, offset))
        self.batches.append([Event(Message(partition, o)) for o in (217, 218, 220)])


class Folds:
    def __init__(self) -> None:
        self.folded: list[int] = []

    async def fold(self, events: list[Any]) -> None:
        self.folded += [e.message.offset for e in events]


def test_the_agent_folds_nothing_past_a_hole_until_the_hole_is_read_again() -> None:
    stream, folder = Redelivering(), Folds()
    order = InOrder(lambda p: 217, lambda p: {219}, Clock())
    asyncio.run(fold_batches(stream, folder, 10, 1.0, order, stream.rewind))
    assert stream.rewinds == [(0, 217)]
    assert folder.folded == [217, 218, 220]
    assert stream.acked == [217, 218, 220]
