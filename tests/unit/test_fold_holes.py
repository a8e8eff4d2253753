"""A trend-events record the consumer skipped (a delivery hole) and later re-reads is folded, not taken as held.

Seen in test_event_time[outage]: a restarted worker's first record never reached the windows agent, the agent
folded the records after it, and when the offset-hole healer read it again the key's ``applied`` offset (the
highest folded) said it was already in the state: its messages left their windows for good.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.windows.fold import encode_partials, load_state
from streams.windows.state import KeyState, Partial
from tests.unit.test_evict import FakeTable, _folder


def record(offset: int, message: str, ts: float = 1000.0) -> Any:
    partial = Partial("ticker", "TSLA", ts, 1, 1, 0.9, (), (message,))
    return SimpleNamespace(value=encode_partials([partial]), key=b"", message=SimpleNamespace(
        topic="t.trend-events", partition=0, offset=offset))


def test_a_record_read_again_after_a_hole_is_folded_once_and_the_rest_are_not_counted_twice() -> None:
    table = FakeTable()
    folder, _ = _folder(table)

    async def run() -> None:
        await folder.fold([record(12, "a"), record(14, "c")])  # 13 never reached the agent
        await folder.fold([record(13, "b"), record(14, "c")])  # the healer's seek: 13 and 14 again

    asyncio.run(run())
    [window] = load_state(table.data["ticker|TSLA"]).windows
    assert (window.count, window.negative) == (3, 3)


def test_a_restored_state_holds_what_its_worker_folded_and_nothing_it_skipped() -> None:
    table = FakeTable()
    folder, _ = _folder(table)
    asyncio.run(folder.fold([record(20, "a"), record(22, "c")]))  # 21 skipped, then the worker stops
    restarted, _ = _folder(table)  # the next worker reads again from the committed offset, 20
    asyncio.run(restarted.fold([record(20, "a"), record(21, "b"), record(22, "c")]))
    [window] = load_state(table.data["ticker|TSLA"]).windows
    assert (window.count, window.negative) == (3, 3)


def test_states_written_before_the_offsets_list_hold_every_offset_up_to_the_last_one_folded() -> None:
    old = KeyState(applied=(0, 30))
    assert old.holds(0, 30) and old.holds(0, 12) and not old.holds(0, 31) and not old.holds(1, 12)
