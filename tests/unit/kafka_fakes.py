"""Fakes of aiokafka's producer and its record batches, for the score stage's unit tests."""

from __future__ import annotations

import asyncio


class FakeBatch:
    def __init__(self, limit: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.limit = limit

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if self.records and len(self.records) >= self.limit:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Records every batch sent; with transactions, as aiokafka's: a failed send fails the commit."""

    def __init__(self, limit: int = 2, fail: bool = False) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.limit, self.fail = limit, fail
        self.in_transaction = False
        self.committed: list[dict[object, tuple[int, str]]] = []  # offsets of each committed transaction
        self.aborted = 0
        self._offsets: dict[object, tuple[int, str]] = {}
        self._failed = False

    async def begin_transaction(self) -> None:
        assert not self.in_transaction, "a transaction is already open"
        self.in_transaction, self._offsets, self._failed = True, {}, False

    async def send_offsets_to_transaction(self, offsets: dict[object, tuple[int, str]], group_id: str) -> None:
        assert self.in_transaction
        self._offsets.update(offsets)

    async def commit_transaction(self) -> None:
        assert self.in_transaction
        if self._failed:
            raise RuntimeError("a send of this transaction failed")
        self.in_transaction = False
        self.committed.append(self._offsets)

    async def abort_transaction(self) -> None:
        assert self.in_transaction
        self.in_transaction = False
        self.aborted += 1

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.limit)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            self._failed = True
            fut.set_exception(RuntimeError("broker gone"))
        else:
            fut.set_result(None)
        return fut
