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
    def __init__(self, limit: int = 2, fail: bool = False) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.limit, self.fail = limit, fail

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
            fut.set_exception(RuntimeError("broker gone"))
        else:
            fut.set_result(None)
        return fut
