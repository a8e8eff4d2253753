"""The commit rule (streams/score/offsets.py), pure and inside a real Faust consumer."""

from __future__ import annotations

from typing import Any

import faust
import pytest
from faust.types import TP

from streams.score.offsets import HoleHealer, committable, hole, patch_new_offset
from streams.windows.absent import AbsentOffsets


def test_never_commits_past_the_record_at_the_committed_offset() -> None:
    # offset 10 is still being scored by another actor while 11 and 12 are done
    assert committable([11, 12], committed=10) == (None, [11, 12])
    assert committable([10, 11, 12], committed=10) == (13, [])


def test_repeated_offsets_do_not_slow_the_commit() -> None:
    # Faust's run of "consecutive numbers" stopped at the first repeat: one offset per commit
    assert committable([370, 371, 371, 372, 372, 373, 373, 374], committed=371) == (375, [])


def test_stops_below_the_lowest_record_in_flight() -> None:
    assert committable([5, 6, 7, 9], committed=5, in_flight=[8]) == (8, [9])
    assert committable([5, 7], committed=5, in_flight=[6]) == (6, [7])
    # a second copy of 6 (re-read after a seek) that Faust keeps "in flight" although 6 is acknowledged
    assert committable([5, 6, 7], committed=5, in_flight=[6]) == (8, [])
    assert committable([1, 2, 3], committed=None, in_flight=[0]) == (None, [1, 2, 3])


def test_a_first_commit_starts_at_the_lowest_acked_offset() -> None:
    assert committable([3, 1, 2, 5], committed=None) == (4, [5])


def test_nothing_acked_nothing_to_commit() -> None:
    assert committable([], committed=7) == (None, [])
    assert committable([3, 4], committed=7) == (None, [])  # re-acks of committed records are dropped


def test_transaction_markers_count_as_done() -> None:
    """Offsets the fetcher skipped (a commit marker after each transaction) never come: waiting for them would
    hold every commit back until the healer gave up on each one."""
    assert committable([0, 1, 3, 4], committed=0, absent=[2]) == (5, [])
    assert committable([], committed=5, absent=[5]) == (6, [])  # a trailing marker: the lag reaches 0
    assert committable([3], committed=0, absent=[1, 2]) == (None, [3])  # 0 is still a hole
    assert committable([0], committed=0, in_flight=[2], absent=[1]) == (2, [])  # in flight still stops it
    assert committable([7], committed=5, absent=[1, 5]) == (6, [7])  # 6 missing; 1 is before the commit


def test_a_hole_filled_by_an_absent_offset_is_no_hole() -> None:
    assert hole([6], committed=5, absent=[5]) is None
    assert hole([6], committed=5, absent=[4]) == 5


ABSENT = AbsentOffsets(["t"])


@pytest.fixture
def consumer() -> Any:
    patch_new_offset(ABSENT)
    return faust.App("offsets-test", broker="kafka://127.0.0.1:1").consumer  # never started


def test_installed_in_faust(consumer: Any) -> None:
    c = consumer
    tp = TP("t", 0)
    c._committed_offset[tp] = 10
    c._acked[tp].extend([11, 12])
    c._acked_index[tp].update([11, 12])
    assert c._new_offset(tp) is None  # faust-streaming 0.15.3's own method returned 13
    c._acked[tp].append(10)
    assert c._new_offset(tp) == 13
    assert list(c._acked[tp]) == [] and c._acked_index[tp] == set()


def test_gaps_no_longer_count_as_acknowledged(consumer: Any) -> None:
    """Faust's gap (2-4 "skipped by the fetch") was records it had not delivered yet: they hold the commit."""
    c = consumer
    tp = TP("t", 1)
    c._committed_offset[tp] = 0
    c._gap[tp].addi(2, 5)
    c._acked[tp].extend([0, 1, 5, 6])
    assert c._new_offset(tp) == 2
    assert not c._gap[tp]
    assert hole(c._acked[tp], 2) == 2


def test_installed_in_faust_commits_over_noted_markers(consumer: Any) -> None:
    c = consumer
    tp = TP("t", 2)
    c._committed_offset[tp] = 20
    c._acked[tp].extend([20, 22])
    assert c._new_offset(tp) == 21  # 21 not known absent: held
    c._committed_offset[tp] = 21  # Faust committed it
    ABSENT.note("t", 2, [21, 23])
    assert c._new_offset(tp) == 24
    assert ABSENT.since("t", 2, 24) == set()  # forgotten once committed over


def test_a_hole_is_the_committed_offset_nobody_holds() -> None:
    assert hole([5, 6], committed=3) == 3
    assert hole([3, 5, 6], committed=3) is None  # 3 is done: an ordinary commit follows
    assert hole([5, 6], committed=3, in_flight=[3]) is None  # still on its way
    assert hole([5, 6], committed=3, in_flight=[4, 9]) == 3  # records arrive in order: 3 was dropped
    assert hole([], committed=3) is None
    assert hole([], committed=3, read=3) is None  # just seeked to 3, nothing delivered yet
    assert hole([], committed=3, read=10) == 3  # delivered up to 10, nothing acked or in flight
    assert hole([5], committed=None) is None


def test_the_healer_seeks_a_settled_hole_then_commits_over_it() -> None:
    healer = HoleHealer(settle_ticks=2, max_seeks=2)
    assert healer.tick({"p": 3}) == []  # first sight: a commit may be about to happen
    assert healer.tick({"p": 3}) == [("seek", "p", 3)]
    assert healer.tick({"p": 3}) == []
    assert healer.tick({"p": 3}) == [("seek", "p", 3)]
    assert healer.tick({"p": 3}) == []
    assert healer.tick({"p": 3}) == [("skip", "p", 3)]  # really absent: commit over it


def test_the_healer_forgets_a_filled_hole() -> None:
    healer = HoleHealer(settle_ticks=2, max_seeks=1)
    healer.tick({"p": 3})
    assert healer.tick({"p": 3}) == [("seek", "p", 3)]
    assert healer.tick({"p": None}) == []  # the re-read filled it
    assert healer.tick({"p": 8}) == []  # a new hole starts over
    assert healer.tick({"p": 8}) == [("seek", "p", 8)]
    assert healer.tick({}) == []  # partition revoked
    assert healer.tick({"p": 8}) == []


def test_a_commit_held_with_records_waiting_is_reported_every_few_ticks() -> None:
    healer = HoleHealer(stuck_ticks=2)
    assert [healer.held("p", 5, waiting=True) for _ in range(5)] == [False, False, True, False, True]
    assert not healer.held("p", 6, waiting=True)  # it moved
    assert [healer.held("p", 6, waiting=False) for _ in range(3)] == [False, False, False]  # caught up
