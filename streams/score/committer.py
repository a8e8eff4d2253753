"""The score stage's committer: offsets of batches in flight, committed in the order they were read.

A batch's offsets are committed once its outputs are delivered and every batch read before it is
committed, so a later batch never commits over an earlier one still in flight: at-least-once. With
exactly-once they are committed in the batch's transaction, in the same order (:class:`InTransaction`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aiokafka.errors import KafkaError

from streams.score.batch import Offsets
from streams.score.clock import PartitionClock, partition_name
from tonewatch.core.errors import ServiceError

log = logging.getLogger(__name__)


class OffsetStore(Protocol):
    """Where offsets go: the reader's consumer, or a test's fake."""

    async def commit(self, offsets: Offsets) -> None: ...
    async def seek_to_committed(self) -> None: ...


class InTransaction:
    """With exactly-once, each batch's offsets go in its transaction (``Publisher.deliver``): committing here only
    records the partition times committed with them, so a rewind returns to those."""

    def __init__(self, reader: OffsetStore, clock: PartitionClock) -> None:
        self.reader, self.clock = reader, clock

    async def commit(self, offsets: Offsets) -> None:
        for tp, offset in offsets.items():
            self.clock.metadata(partition_name(tp.topic, tp.partition), offset)

    async def seek_to_committed(self) -> None:
        await self.reader.seek_to_committed()


class Committer:
    """Batches in flight as tasks that return their offsets; at most ``concurrency`` before one must finish."""

    def __init__(self, offsets: OffsetStore, concurrency: int) -> None:
        self.offsets = offsets
        self.concurrency = concurrency
        self._pending: deque[asyncio.Task[Offsets]] = deque()
        self._lock = asyncio.Lock()
        self._on_rewind: list[Callable[[], None]] = []

    def __len__(self) -> int:
        """Batches in flight, not yet committed."""
        return len(self._pending)

    def on_rewind(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` when a failed batch sends the stage back to the last commit (before the seek)."""
        self._on_rewind.append(forget)

    def track(self, batch: asyncio.Task[Offsets]) -> None:
        """A batch just read; its offsets are committed after those of every batch tracked before it."""
        self._pending.append(batch)

    async def drain(self) -> None:
        await self.settle(drain=True)

    async def settle(self, drain: bool = False) -> None:
        """Commit finished batches in read order: all of them with ``drain``, else the done ones, waiting
        for the oldest while ``concurrency`` batches are in flight."""
        async with self._lock:
            while self._pending and (drain or self._pending[0].done()
                                     or len(self._pending) >= self.concurrency):
                task = self._pending.popleft()
                try:
                    offsets = await task
                except ServiceError:  # a collaborator refusing for good (ProduceRefused): the stage stops
                    await self._cancel_pending()
                    raise
                except Exception:  # a bug, not a bad message (those are dead-lettered): read it all again
                    await self._rewind()
                    return
                await self._commit(offsets)

    async def _cancel_pending(self) -> None:
        for task in self._pending:
            task.cancel()
        self._pending.clear()

    async def _rewind(self) -> None:
        log.exception("a batch failed; the stage reads again from the last commit")
        await self._cancel_pending()
        for forget in self._on_rewind:
            forget()
        await self.offsets.seek_to_committed()

    async def _commit(self, offsets: Offsets) -> None:
        try:
            await self.offsets.commit(offsets)
        except KafkaError as exc:  # the partition moved to another worker, which reads these again
            log.warning("commit of %s failed (%s): the batch will be read again", offsets, exc)
