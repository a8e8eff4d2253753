"""NAB scoring of series other than counts that rise: metrics, falls, a new normal, the first day (#28)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from streams.windows.baseline import Level
from streams.windows.changepoint import dispersion
from tonewatch.evaluation.nab import NabConfig, surge_scores
from tonewatch.evaluation.nab_evidence import Kind, drop_z, series_kind

CFG = NabConfig()
STEP, DAY = 300.0, 86400.0
PER_DAY = int(DAY / STEP)


def fired(scores: list[float], after: int = 0) -> list[int]:
    return [i for i, s in enumerate(scores) if s >= 0.5 and i >= after]


def caught(firings: list[int], onsets: list[int], within: int = 12) -> bool:
    """One firing per onset, each within ``within`` points (an hour) after it, and none elsewhere."""
    return len(firings) == len(onsets) and all(0 <= f - a < within for f, a in zip(firings, onsets, strict=True))


def daily_metric(days: int, seed: int = 1, noise: float = 2.0) -> np.ndarray:
    """A positive metric with a strong daily cycle (25 to 75) and Gaussian noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * PER_DAY) * STEP / 3600 % 24
    return 50 * (1 + 0.5 * np.sin(hours / 24 * 2 * np.pi)) + rng.normal(0, noise, hours.size)


@pytest.mark.parametrize(("values", "kind"), [
    ([0.0, 3.0, 12.0], Kind.COUNTS),
    ([0.5, 3.0, 12.0], Kind.POSITIVE),
    ([-0.5, 3.0, math.nan], Kind.SIGNED),
    ([1.0, math.inf, 2.0], Kind.COUNTS),
])
def test_a_series_kind_is_read_from_its_values(values: list[float], kind: Kind) -> None:
    assert series_kind(values) is kind


def test_a_metric_that_falls_fires_and_a_rises_only_detector_misses_it() -> None:
    x = daily_metric(8)
    at = 6 * PER_DAY + 40
    x[at:at + 72] *= 0.4  # six hours at 40 %
    assert caught(fired(surge_scores(list(x), CFG), 2 * PER_DAY), [at])
    assert fired(surge_scores(list(x), NabConfig(two_sided=False)), 2 * PER_DAY) == []


def test_a_calm_metric_with_a_daily_cycle_never_fires() -> None:
    assert fired(surge_scores(list(daily_metric(8, seed=3)), CFG), 2 * PER_DAY) == []


def test_a_count_that_drops_to_nothing_fires() -> None:
    rng = np.random.default_rng(2)
    x = rng.poisson(100, 6 * PER_DAY).astype(float)
    at = 4 * PER_DAY + 10
    x[at:at + 12] = rng.poisson(2, 12)  # an hour's outage
    assert caught(fired(surge_scores(list(x), CFG), PER_DAY), [at])
    rises_only = fired(surge_scores(list(x), NabConfig(count_drops=False)), PER_DAY)
    assert [i for i in rises_only if i < at + 12] == []  # at best the recovery, an hour late


def test_after_a_new_normal_the_next_anomaly_still_fires() -> None:
    rng = np.random.default_rng(4)
    x = 30 + rng.normal(0, 2, 8 * PER_DAY)
    shift, spike = 3 * PER_DAY, 6 * PER_DAY
    x[shift:] += 25  # a deploy moves the metric for good
    x[spike:spike + 4] += 40
    assert caught(fired(surge_scores(list(x), CFG), PER_DAY), [shift, spike])
    frozen = fired(surge_scores(list(x), NabConfig(firing_weight=0.0)), PER_DAY)
    assert caught(frozen, [shift])  # the baselines never learnt the new normal: the alert stays open


def test_the_first_days_learning_does_not_raise_the_novelty_bar_for_two_weeks() -> None:
    x = daily_metric(8, seed=5, noise=1.0)
    at = 5 * PER_DAY + 100
    x[at:at + 36] += 30
    assert caught(fired(surge_scores(list(x), CFG), 2 * PER_DAY), [at])
    uncapped = fired(surge_scores(list(x), NabConfig(first_day_cap=1e9)), 2 * PER_DAY)
    assert uncapped == [] or uncapped[0] >= at + 12  # the first day's z's set a bar the surge reaches late


@settings(max_examples=200, deadline=None)
@given(mean=st.floats(0.5, 5000), spread=st.floats(0, 3), frac=st.floats(0, 0.999))
def test_a_drops_z_is_never_more_than_its_negative_binomial_lower_tail(mean: float, spread: float,
                                                                        frac: float) -> None:
    level = Level(mean, spread * math.sqrt(mean), 50)
    k = math.floor(frac * mean)
    phi = dispersion(level)
    r = 1 / phi if phi > 1e-9 else math.inf
    tail = stats.poisson.cdf(k, mean) if math.isinf(r) else stats.nbinom.cdf(k, r, r / (r + mean))
    z = drop_z(float(k), level)
    assert 0.0 <= z <= max(-stats.norm.ppf(tail), 0.0) + 1e-6


def test_a_count_at_or_above_its_level_is_no_drop() -> None:
    assert drop_z(10.0, Level(10.0, 2.0, 50)) == 0.0
    assert drop_z(math.nan, Level(10.0, 2.0, 50)) == 0.0
