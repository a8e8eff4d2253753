"""Event-time alignment of a batch across partitions (streams/score/align.py)."""

from __future__ import annotations

from streams.score.align import horizon, keep_counts


def test_a_partition_ahead_waits_for_one_with_more_to_read() -> None:
    times = {"chat": [10.0, 50.0, 90.0, 120.0], "news": [10.0, 20.0, 30.0]}
    assert horizon(times, {"news"}) == 30.0
    assert keep_counts(times, {"news"}) == {"chat": 1, "news": 3}


def test_nothing_waiting_means_nothing_cut() -> None:
    times = {"chat": [10.0, 120.0], "news": [5.0]}
    assert horizon(times, set()) is None
    assert keep_counts(times, set()) == {"chat": 2, "news": 1}


def test_the_earliest_frontier_wins_and_the_partition_setting_it_keeps_everything() -> None:
    times = {"a": [1.0, 9.0, 3.0], "b": [2.0, 5.0], "c": [1.0, 4.0, 8.0]}
    # a's highest time is 9, b's 5: b sets the horizon and keeps both records (its own max), even out of order
    assert keep_counts(times, {"a", "b"}) == {"a": 1, "b": 2, "c": 2}


def test_invalid_records_never_cut_and_an_all_invalid_partition_sets_no_horizon() -> None:
    times = {"a": [None, 1.0, None, 7.0], "b": [None, None]}
    assert horizon(times, {"b"}) is None
    assert keep_counts(times, {"a", "b"}) == {"a": 4, "b": 2}
    assert keep_counts({"a": [None, 1.0, None, 7.0], "c": [3.0]}, {"c"}) == {"a": 3, "c": 1}
