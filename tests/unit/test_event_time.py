"""Event time without a broker: partition clocks, marks, the watermark, and windows that close on it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.metrics import create_metrics
from streams.score.clock import PartitionClock
from streams.windows.detector import Partial
from streams.windows.fold import decode_record, encode_marks, encode_partials, load_state
from streams.windows.folder import WindowFolder
from streams.windows.watermark import Mark, Watermarks
from tonewatch.core.settings import Settings


def test_lateness_is_judged_against_the_partition_own_time() -> None:
    clock = PartitionClock(lateness_s=120, idle_s=5)
    assert clock.admit("news/0", 1000) and clock.admit("news/0", 900)  # within the lateness: on time
    assert not clock.admit("news/0", 879)  # older than 1000 - 120
    assert clock.admit("chat/0", 500)  # another partition far behind is not late: it has its own time
    assert clock.times == {"news/0": 1000, "chat/0": 500}


def test_the_time_committed_with_an_offset_is_restored_by_the_next_owner() -> None:
    clock = PartitionClock(lateness_s=120, idle_s=5)
    clock.admit("news/0", 1000)
    clock.checkpoint("news/0", 10)
    clock.admit("news/0", 2000)
    clock.checkpoint("news/0", 20)
    meta = clock.metadata("news/0", 10)  # only the first batch is committed
    other = PartitionClock(lateness_s=120, idle_s=5)
    other.restore("news/0", meta)
    assert other.times == {"news/0": 1000}
    assert not other.admit("news/0", 870)  # judged as the first owner judged it after offset 10
    clock.rollback()  # a failed batch: back to the committed time too
    assert clock.times == {"news/0": 1000}


def test_a_partition_with_nothing_to_read_turns_idle_after_the_timeout() -> None:
    now = [0.0]
    clock = PartitionClock(lateness_s=120, idle_s=5, now=lambda: now[0])
    clock.admit("news/0", 1000)
    clock.caught_up("news/0", True)
    assert clock.marks(["news/0", "chat/0"]) == {"news/0": Mark(1000, False), "chat/0": Mark(None, False)}
    now[0] = 6.0
    assert clock.marks(["news/0"]) == {"news/0": Mark(1000, True)}
    clock.caught_up("news/0", False)  # records again
    assert clock.marks(["news/0"]) == {"news/0": Mark(1000, False)}


def test_the_watermark_is_the_least_partition_time_and_waits_for_every_partition() -> None:
    w = Watermarks()
    w.hear({"news/0": Mark(1000)}, inputs=["news/0", "chat/0"])
    assert w.watermark() is None  # chat/0 not heard from yet
    w.hear({"chat/0": Mark(400)})
    assert w.watermark() == 400
    w.hear({"chat/0": Mark(300)})  # a new owner restarting from an older commit never moves it back
    assert w.watermark() == 400
    w.hear({"chat/0": Mark(450, idle=True)})
    assert w.watermark() == 1000  # an idle partition does not hold it back
    w.hear({"news/0": Mark(1000, idle=True)})
    assert w.watermark() == 1000  # all idle: the latest time read anywhere


def test_marks_travel_with_or_without_partials() -> None:
    record = decode_record(encode_marks({"news/0": Mark(12.5), "chat/1": Mark(None, True)}, ["chat/1", "news/0"]))
    assert record.partials == [] and record.inputs == ("chat/1", "news/0")
    assert record.marks == {"news/0": Mark(12.5), "chat/1": Mark(None, True)}
    with pytest.raises(ValueError):
        decode_record(b'{"marks": {"news/0": [12.5]}}')


class FakeTable:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.changelog: list[tuple[int, str]] = []

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def send_changelog(self, partition: int, key: str, value: bytes) -> asyncio.Future[None]:
        self.changelog.append((partition, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # delivered at once
        return done


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        """As Faust's: awaiting the send hands the record over; the future it returns is its delivery."""
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _record(value: bytes, offset: int) -> Any:
    return SimpleNamespace(value=value, key=b"", message=SimpleNamespace(topic="t.trend-events", partition=0,
                                                                         offset=offset))


def _partial(ts: float, negative: int = 0) -> Partial:
    return Partial("ticker", "TSLA", ts, 10, negative, negative * 0.9, (), tuple(f"m{ts}-{i}" for i in range(10)))


def test_windows_close_on_the_least_partition_time_and_a_lagging_partition_is_never_late() -> None:
    settings = Settings().updated(kafka__topic_partitions=1)
    topics = SimpleNamespace(trends=FakeTopic(), alerts=FakeTopic(), dead_letter=FakeTopic())
    folder = WindowFolder(settings, topics, FakeTable(), settings.detector, create_metrics())  # type: ignore[arg-type]
    inputs = ["news/0", "chat/0"]

    async def run() -> None:
        # news has read an hour ahead; chat is still at minute 1: nothing may close yet
        await folder.fold([_record(encode_partials([_partial(60), _partial(3600)]), 0),
                           _record(encode_marks({"news/0": Mark(3600), "chat/0": Mark(60)}, inputs), 1)])
        assert topics.trends.sent == []
        # chat's minute-1 messages come now: its own window is still open, so they are counted, not late
        await folder.fold([_record(encode_partials([_partial(70)]), 2),
                           _record(encode_marks({"chat/0": Mark(400)}, inputs), 3)])
        assert topics.dead_letter.sent == []
        assert len(topics.trends.sent) == 1  # minute 1 closed once chat passed 60 + 60 + 120

    asyncio.run(run())
    state = load_state(folder.table.data["ticker|TSLA"])
    assert state.closed_windows == 1 and [w.start for w in state.windows] == [3600]
    assert b'"count":20' in topics.trends.sent[0]
