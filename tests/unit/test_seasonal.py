"""The market clock: a key's daily profile is learnt online, a young key reads the fallback, the state is JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from tonewatch.core.errors import InvalidInput
from tonewatch.evaluation import seasonal

HOUR = 3600.0
MONDAY = datetime(2015, 3, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def market(hour: int) -> float:
    """Busy at the open (14 UTC), quiet overnight: a ticker's clock."""
    return 3.0 if hour == 14 else 1.0 if 14 < hour < 21 else 0.3


def learn(days: int, buckets: int = 24, per_hour: int = 6) -> seasonal.Profile:
    profile = seasonal.new(buckets)
    for step in range(days * 24 * per_hour):
        ts = MONDAY + step * HOUR / per_hour
        profile = seasonal.update(profile, ts, 10 * market(int(ts // HOUR) % 24), 10.0, alpha=0.1)
    return profile


def test_buckets_follow_utc_hours_weekdays_and_weekends() -> None:
    saturday = MONDAY + 5 * 24 * HOUR
    assert [seasonal.bucket(MONDAY + 14.5 * HOUR, n) for n in (24, 48, 168)] == [14, 14, 14]
    assert [seasonal.bucket(saturday + 14.5 * HOUR, n) for n in (24, 48, 168)] == [14, 38, 134]
    assert seasonal.bucket(MONDAY + 14.5 * HOUR, 24, offset_s=-5 * HOUR) == 9  # New York time


def test_a_daily_pattern_is_learnt_and_normalised() -> None:
    profile = learn(days=5)
    at = {h: seasonal.factor(profile, MONDAY + 7 * 24 * HOUR + (h + 0.5) * HOUR) for h in range(24)}
    assert at[14] / at[3] == pytest.approx(10.0, rel=0.05)  # the open is 10x the night
    assert at[16] / at[3] == pytest.approx(1 / 0.3, rel=0.05)
    assert sum(at.values()) / 24 == pytest.approx(1.0, rel=1e-6)  # a weekly mean of 1: the level keeps its scale


def test_a_young_key_reads_the_fallback_until_its_buckets_are_taught() -> None:
    fallback = learn(days=5)
    open_ts = MONDAY + 14.5 * HOUR
    young = seasonal.new()
    assert seasonal.factor(young, open_ts) == 1.0  # no fallback: a flat clock
    market_open = seasonal.factor(fallback, open_ts)
    assert market_open > 4  # the fallback's clock: the open is busy
    assert seasonal.factor(young, open_ts, fallback) == pytest.approx(market_open)
    flat = young
    for i in range(30):  # this key is as busy at the open as at any hour
        flat = seasonal.update(flat, open_ts + 60 * i, 10.0, 10.0, alpha=0.1)
    assert flat[24 + 14] == 30
    halfway = seasonal.factor(flat, open_ts, fallback, min_seen=60)
    assert halfway == pytest.approx((1.0 + market_open) / 2)  # half taught: half its own, half the fallback
    assert seasonal.factor(flat, open_ts, fallback, min_seen=30) == pytest.approx(1.0)  # taught: its own


def test_the_state_round_trips_through_json_and_malformed_state_is_a_new_profile() -> None:
    profile = learn(days=2, buckets=48)
    assert seasonal.from_json(json.loads(json.dumps(profile)), 48) == profile
    assert seasonal.from_json(None) == seasonal.new()
    assert seasonal.from_json([1.0, 2.0]) == seasonal.new()  # another layout
    assert seasonal.from_json(["x"] * 48) == seasonal.new()
    assert seasonal.from_json([math.nan] * 48) == seasonal.new()


@pytest.mark.parametrize(("ts", "count", "level"), [
    (math.nan, 5.0, 1.0), (math.inf, 5.0, 1.0), (0.0, math.nan, 1.0), (0.0, math.inf, 1.0),
    (0.0, 5.0, math.nan), (0.0, 5.0, 0.0), (0.0, -1.0, 1.0),
])
def test_non_finite_input_is_no_evidence_and_never_raises(ts: float, count: float, level: float) -> None:
    profile = learn(days=1)
    assert seasonal.update(profile, ts, count, level, alpha=0.1) == profile
    assert seasonal.factor(profile, math.nan) == 1.0
    assert seasonal.factor(profile, math.inf, profile) == 1.0
    assert seasonal.factor((math.nan,) * 48, 0.0) == 1.0
    assert seasonal.update((), ts, count, level, alpha=0.1) == ()  # a malformed state is left to from_json
    assert seasonal.update((1.0, 2.0, 3.0), 0.0, 5.0, 1.0, alpha=0.1) == (1.0, 2.0, 3.0)


def test_one_burst_on_a_quiet_key_moves_its_hour_a_bounded_step() -> None:
    profile = learn(days=5)
    burst = seasonal.update(profile, MONDAY + 5 * 24 * HOUR + 3.5 * HOUR, 1e9, 1.0, alpha=0.1)
    assert burst[3] <= profile[3] + 0.1 * 10 + 1e-9  # the ratio is capped at max_ratio


def test_an_unknown_layout_is_a_config_error() -> None:
    with pytest.raises(InvalidInput, match="buckets"):
        seasonal.new(12)
