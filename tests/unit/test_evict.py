"""Idle keys leave the windows table: which are due (pure), and the folder deleting them with tombstones."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from streams.metrics import create_metrics
from streams.windows.detector import Firing, KeyState, Partial, Window
from streams.windows.evict import ExpiryIndex, expires_at
from streams.windows.fold import dump_state, encode_marks, encode_partials, load_state
from streams.windows.folder import WindowFolder
from streams.windows.watermark import Mark
from tests.unit.test_event_time import FakeTopic
from tonewatch.core.sections import DetectorSettings
from tonewatch.core.settings import Settings

DAY = 86_400.0
INPUTS = ["news/0"]
TTL = 7 * DAY


def test_an_idle_key_expires_ttl_after_its_last_window_and_not_before_its_cooldown() -> None:
    idle = KeyState(closed_until=600.0, closed_windows=3)
    assert expires_at(idle, TTL) == 600 + TTL
    assert expires_at(KeyState(closed_until=600.0, cooldown_until=600 + 2 * TTL), TTL) == 600 + 2 * TTL
    assert expires_at(idle, 0) is None  # eviction off


def test_a_key_with_an_open_window_or_an_open_alert_never_expires() -> None:
    assert expires_at(KeyState(windows=(Window(start=540.0, count=1),), closed_until=540.0), TTL) is None
    firing = KeyState(closed_until=600.0, firing=Firing("a1", 480.0, "warning", 5.0))
    assert expires_at(firing, TTL) is None


def test_due_keys_come_out_once_in_expiry_order_whatever_the_order_they_were_noted_in() -> None:
    expiries = {f"k{i}": float(i % 7) for i in range(50)}
    runs = []
    for seed in (1, 2):
        index = ExpiryIndex()
        names = list(expiries)
        random.Random(seed).shuffle(names)
        for name in names:
            index.set(name, expiries[name])
        runs.append((index.due(3.0), index.due(3.0), index.due(10.0)))
    assert runs[0] == runs[1]  # a replay evicts in the same order
    first, again, rest = runs[0]
    assert first == sorted((k for k, e in expiries.items() if e <= 3), key=lambda k: (expiries[k], k))
    assert again == [] and sorted(rest) == sorted(k for k, e in expiries.items() if e > 3)


def test_a_key_noted_again_is_due_at_its_latest_expiry_only() -> None:
    index = ExpiryIndex()
    index.set("a", 10.0)
    index.set("a", 20.0)  # a later window closed
    index.set("b", 5.0)
    index.set("b", None)  # b opened a window again
    assert index.due(15.0) == [] and len(index) == 1
    assert index.due(20.0) == ["a"] and len(index) == 0


def test_the_index_stays_small_when_busy_keys_are_noted_over_and_over() -> None:
    index = ExpiryIndex()
    for step in range(10_000):  # 10 busy keys, a new expiry each window: stale entries are dropped
        index.set(f"k{step % 10}", float(step))
    assert len(index) == 10 and index.entries <= 2 * 10 + 64
    assert index.due(10_000.0) == [f"k{i}" for i in range(10)]


def test_a_ttl_shorter_than_a_window_and_its_lateness_is_refused() -> None:
    with pytest.raises(ValidationError, match="key_ttl_s"):
        DetectorSettings(window_s=60, allowed_lateness_s=120, key_ttl_s=100)
    assert DetectorSettings(key_ttl_s=0).key_ttl_s == 0


class FakeTable:
    """Faust's table as the folder uses it: the store, and the changelog records sent (None: a tombstone)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.changelog: list[tuple[int, str, bytes | None]] = []

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def send_changelog(self, partition: int, key: str, value: bytes | None, value_serializer: str | None = None
                       ) -> asyncio.Future[None]:
        # the table's own serializer would turn None into b"null", a value, not a tombstone
        assert value is not None or value_serializer == "raw"
        self.changelog.append((partition, key, value))
        return self.delivery()

    def delivery(self) -> asyncio.Future[None]:
        """As Faust's ``send_soon``: a future the producer resolves once the record is on the broker."""
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class SlowChangelog(FakeTable):
    """A changelog whose records stay in the producer's buffer until ``deliver``."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    def delivery(self) -> asyncio.Future[None]:
        self.pending.append(asyncio.get_running_loop().create_future())
        return self.pending[-1]

    def deliver(self) -> None:
        for future in self.pending:
            future.set_result(None)
        self.pending.clear()


class Feed:
    """Records for one trend-events partition, offsets counted."""

    def __init__(self, folder: WindowFolder) -> None:
        self.folder, self.offset = folder, 0

    def _record(self, value: bytes) -> Any:
        self.offset += 1
        return SimpleNamespace(value=value, key=b"", message=SimpleNamespace(
            topic="t.trend-events", partition=0, offset=self.offset))

    async def partials(self, names: list[str], ts: float) -> None:
        partials = [Partial("ticker", n, ts, 1, 0, 0.1, (), (f"{n}-{ts}",)) for n in names]
        await self.folder.fold([self._record(encode_partials(partials))])

    async def mark(self, ts: float) -> None:
        await self.folder.fold([self._record(encode_marks({"news/0": Mark(ts)}, INPUTS))])


def _folder(table: FakeTable, **changes: Any) -> tuple[WindowFolder, Any]:
    settings = Settings().updated(kafka__topic_partitions=1, **changes)
    topics = SimpleNamespace(trends=FakeTopic(), alerts=FakeTopic(), dead_letter=FakeTopic())
    return WindowFolder(settings, topics, table, settings.detector, create_metrics()), topics  # type: ignore[arg-type]


def test_a_thousand_one_off_keys_leave_the_table_once_the_watermark_is_past_their_ttl() -> None:
    table = FakeTable()
    # restored from the changelog: a key firing with no open window must stay until it resolves
    firing = KeyState(closed_until=60.0, closed_windows=9, firing=Firing("a1", 0.0, "warning", 5.0))
    table.data["ticker|HELD"] = dump_state(firing)
    table.data["ticker|STALE"] = dump_state(KeyState(closed_until=60.0, closed_windows=4, baseline=0.3))
    folder, topics = _folder(table)
    feed = Feed(folder)
    names = [f"X{i:04d}" for i in range(1000)]

    async def run() -> None:
        await feed.partials(names, 1000.0)  # one hostile burst: a thousand new keys
        await feed.mark(1000.0)
        await feed.mark(1200.0)  # their windows close: trends sent, the keys stay, idle
        assert len(topics.trends.sent) == 1000 and len(table.data) == 1002
        await feed.partials(["LIVE"], 30 * DAY)  # a key still talking
        await feed.mark(30 * DAY)

    asyncio.run(run())
    assert set(table.data) == {"ticker|HELD", "ticker|LIVE"}
    tombstones = {key for _, key, value in table.changelog if value is None}
    assert tombstones == {f"ticker|{n}" for n in names} | {"ticker|STALE"}
    registry = folder.metrics.registry
    assert registry.get_sample_value("tonewatch_keys_evicted_total", {"dimension": "ticker"}) == 1001
    assert registry.get_sample_value("tonewatch_table_keys", {"partition": "0"}) == 2


def test_an_evicted_key_seen_again_starts_fresh() -> None:
    table = FakeTable()
    folder, _ = _folder(table)
    feed = Feed(folder)

    async def run() -> None:
        await feed.partials(["ONCE"], 1000.0)
        await feed.mark(1200.0)
        assert load_state(table.data["ticker|ONCE"]).closed_windows == 1
        await feed.mark(30 * DAY)
        assert "ticker|ONCE" not in table.data
        await feed.partials(["ONCE"], 30 * DAY)

    asyncio.run(run())
    state = load_state(table.data["ticker|ONCE"])
    assert state.closed_windows == 0 and state.closed_until is None and len(state.windows) == 1


def test_a_batch_is_done_only_once_the_state_it_wrote_is_on_the_changelog() -> None:
    """The batch's offsets are committed once fold returns: a state record still in the producer's buffer then
    would be lost by a stop, and the restored key would miss the batch's messages for good."""
    table = SlowChangelog()
    folder, _ = _folder(table)
    feed = Feed(folder)

    async def waits_for(step: Any) -> None:
        task = asyncio.ensure_future(step)
        await asyncio.sleep(0.05)
        assert not task.done() and table.pending, "the batch was done before its state was delivered"
        table.deliver()
        await asyncio.wait_for(task, 1.0)

    async def run() -> None:
        await waits_for(feed.partials(["ONCE"], 1000.0))  # a partial folded
        await waits_for(feed.mark(1200.0))  # its window closed
        await waits_for(feed.mark(30 * DAY))  # the key evicted: its tombstone

    asyncio.run(run())
    assert [value is None for _, _, value in table.changelog] == [False, False, True]
