"""The score stage's batch size follows its scoring rate (streams/score/read_size.py)."""

from __future__ import annotations

from streams.score.read_size import ReadSize


def test_two_requests_until_a_rate_is_known() -> None:
    assert ReadSize(64, 2048, 2.0).next() == 128
    assert ReadSize(64, 2048, 2.0, min_requests=1).next() == 64
    assert ReadSize(64, 32, 2.0).next() == 32  # never past the ceiling


def test_fast_scoring_takes_big_batches_and_slow_scoring_small_ones() -> None:
    fast = ReadSize(64, 2048, 2.0)
    fast.observe(64, 0.004)  # trivial models: 16,000 records/s
    assert fast.next() == 2048
    slow = ReadSize(64, 2048, 2.0)
    slow.observe(512, 5.0)  # CPU encoders: about 100 records/s -> 2 s is 204 records, in whole requests
    assert slow.next() == 192
    crawl = ReadSize(64, 2048, 2.0)
    crawl.observe(64, 10.0)
    assert crawl.next() == 128  # two requests at least


def test_the_rate_is_smoothed_and_ignores_empty_batches() -> None:
    r = ReadSize(64, 2048, 1.0)
    r.observe(1000, 1.0)
    r.observe(0, 0.5)
    r.observe(10, 0.0)
    assert r.rate == 1000
    r.observe(200, 1.0)  # one slow batch halves the gap, not the whole size
    assert r.rate == 600 and r.next() == 576
