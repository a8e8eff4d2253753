"""The detector's exact tails (#28): closed forms, so a huge count costs what a small one does.

A key with a small baseline that receives 10^9 messages used to loop 10^9 times in the Poisson tail and stall
the windows agent (and ``tonewatch eval nab`` on realAWSCloudwatch). The reference below is the old algorithm
made exact: the upper-tail terms summed in log space, and the z found by bisection to convergence.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.windows.baseline import EXACT_MAX, Level, binomial_z, count_scale, count_z, logistic

HUGE = 10**9
Z_MAX = 37.0  # the detector's ceiling: the z of a tail at the float floor


def ref_tail_to_z(tail: float) -> float:
    if tail <= 1e-300:
        return Z_MAX
    lo, hi = -10.0, Z_MAX
    for _ in range(200):  # to convergence: the interval stops shrinking long before
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(mid / math.sqrt(2)) > tail else (lo, mid)
    return (lo + hi) / 2


def ref_poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), summing the terms from k up until they stop mattering."""
    terms, i = [], k
    while True:
        terms.append(math.exp(i * math.log(lam) - lam - math.lgamma(i + 1)))
        if i > lam and terms[-1] <= 1e-18 * terms[0]:  # <=: a first term past the floor is 0
            return math.fsum(terms)
        i += 1


def ref_binomial_sf(k: int, n: int, p: float) -> float:
    lp, lq, lc = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, math.fsum(math.exp(lc - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
                              for i in range(k, n + 1)))


def ref_count_z(x: int, level: Level) -> float:
    robust = (x - level.mean) / count_scale(level)
    lam = max(level.mean, 0.05)
    if robust <= 0 or lam > EXACT_MAX or x <= lam:
        return robust
    return min(robust, ref_tail_to_z(ref_poisson_sf(x, lam)))


def ref_binomial_z(k: int, count: int, baseline: float) -> float:
    p = min(max(baseline, 0.02), 0.98)
    if count > EXACT_MAX or k <= p * count:
        excess = k - p * count
        return math.copysign(max(abs(excess) - 0.5, 0.0), excess) / math.sqrt(p * (1 - p) * count)
    return ref_tail_to_z(ref_binomial_sf(k, count, p))


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=300, deadline=None)
@given(x=st.integers(0, 1500), lam=st.floats(0.01, EXACT_MAX), dev=st.floats(0.0, 30.0))
def test_count_z_matches_the_exact_reference_on_small_inputs(x: int, lam: float, dev: float) -> None:
    level = Level(mean=lam, dev=dev, n=20)
    assert close(count_z(x, level), ref_count_z(x, level))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), count=st.integers(1, EXACT_MAX + 20), baseline=st.floats(0.0, 1.0))
def test_binomial_z_matches_the_exact_reference_on_small_inputs(data: st.DataObject, count: int,
                                                                 baseline: float) -> None:
    k = data.draw(st.integers(0, count))
    assert close(binomial_z(k / count, count, baseline), ref_binomial_z(k, count, baseline))


@pytest.mark.parametrize(("x", "lam", "expected"), [
    (5, 1.0, 0.003659846827343713),    # P(X >= 5 | 1) = scipy.stats.poisson.sf(4, 1)
    (45, 10.0, 4.841770357127537e-16),  # one minus the terms below had 15 % error here
])
def test_count_z_tail_against_published_values(x: int, lam: float, expected: float) -> None:
    z = count_z(x, Level(mean=lam, dev=0.0, n=20))
    assert z == pytest.approx(ref_tail_to_z(expected), abs=1e-5)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("mean", [1.0, 1e-9, float(EXACT_MAX)])
def test_a_billion_against_a_small_baseline_is_immediate_and_maximal(mean: float) -> None:
    assert count_z(HUGE, Level(mean=mean, dev=0.0, n=20)) == Z_MAX


@pytest.mark.timeout(5)
def test_a_billion_message_window_is_scored_from_its_share() -> None:
    assert binomial_z(0.2, HUGE, 0.2) == pytest.approx(0.0, abs=1e-3)
    assert binomial_z(0.21, HUGE, 0.2) > 30
    assert binomial_z(1.0, EXACT_MAX, 1e-9) == Z_MAX  # the baseline is floored at 2 %, the tail underflows


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_count_z_takes_non_finite_counts_without_raising(x: float) -> None:
    z = count_z(x, Level(mean=1.0, dev=0.0, n=20))
    assert not math.isnan(z)
    assert z == (Z_MAX if x == math.inf else 0.0 if math.isnan(x) else -math.inf)


@pytest.mark.parametrize("level", [Level(mean=math.nan), Level(mean=1.0, dev=math.nan), Level(mean=math.inf)])
def test_count_z_of_a_corrupt_level_is_no_evidence(level: Level) -> None:
    assert count_z(50, level) == 0.0


@pytest.mark.parametrize(("share", "baseline"), [(math.nan, 0.1), (math.inf, 0.1), (0.5, math.nan)])
def test_binomial_z_of_non_finite_inputs_is_no_evidence(share: float, baseline: float) -> None:
    assert binomial_z(share, 10, baseline) == 0.0
    assert binomial_z(share, HUGE, baseline) == 0.0


def test_logistic_of_nan_is_zero_and_infinities_saturate() -> None:
    assert logistic(math.nan, 4.0, 1.0) == 0.0
    assert logistic(math.inf, 4.0, 1.0) == 1.0
    assert logistic(-math.inf, 4.0, 1.0) == 0.0
