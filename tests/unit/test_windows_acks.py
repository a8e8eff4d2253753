"""The windows agent acknowledges a batch only once it is folded (its state and sends written): a worker stopped in
the middle of a batch must leave that batch to be read again, or its messages vanish from their windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streams.agents import fold_batches


class FaustLikeStream:
    """Batches of events as Faust's ``Stream`` gives them: ``take_events`` acks each batch in a ``finally`` once
    the consumer moves on, or leaves (faust/streams.py); ``noack_take`` leaves acking to the caller."""

    def __init__(self, batches: list[list[str]]) -> None:
        self.batches, self.acked = batches, []  # type: list[list[str]], list[str]

    async def ack(self, event: str) -> bool:
        self.acked.append(event)
        return True

    async def take_events(self, take: int, within: float) -> AsyncIterator[list[str]]:
        for batch in self.batches:
            try:
                yield list(batch)
            finally:
                for event in batch:
                    await self.ack(event)

    async def noack_take(self, take: int, within: float) -> AsyncIterator[list[str]]:
        for batch in self.batches:
            yield list(batch)


class StoppedMidBatch:
    """Folds the first batch; the worker is stopped (the agent cancelled) while it folds the second."""

    def __init__(self) -> None:
        self.folded: list[list[str]] = []

    async def fold(self, events: list[Any]) -> None:
        if self.folded:
            raise asyncio.CancelledError
        self.folded.append(events)


async def _run(stream: FaustLikeStream, folder: StoppedMidBatch) -> None:
    with pytest.raises(asyncio.CancelledError):
        await fold_batches(stream, folder, 10, 1.0)


def test_a_batch_cut_short_by_a_stop_is_not_acknowledged() -> None:
    stream, folder = FaustLikeStream([["a", "b"], ["c", "d"], ["e"]]), StoppedMidBatch()
    asyncio.run(_run(stream, folder))
    assert folder.folded == [["a", "b"]]
    assert stream.acked == ["a", "b"]  # c and d are read again by the next worker


def test_every_folded_batch_is_acknowledged_in_order() -> None:
    class Folds:
        async def fold(self, events: list[Any]) -> None:
            return None

    stream = FaustLikeStream([["a", "b"], ["c"]])
    asyncio.run(fold_batches(stream, Folds(), 10, 1.0))
    assert stream.acked == ["a", "b", "c"]
