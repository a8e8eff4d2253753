"""Robust, incremental baselines: pure math shared by the stream detector and its evaluations.

A few floats per key (an EWMA location and absolute deviation), updated winsorised so one outlier window
moves a baseline by a bounded step (docs/decisions/2026-12-07-two-baselines.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAD_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation to standard deviation for a normal
EXACT_MAX = 400  # windows up to this many messages get the exact binomial tail
YOUNG = 3  # values folded in unclipped, before the deviation means anything


@dataclass(frozen=True)
class Level:
    """EWMA location and absolute deviation of one series (e.g. negative messages per window)."""

    mean: float
    dev: float = 0.0
    n: int = 0  # values folded in: the first few are learnt at a faster rate


def count_scale(level: Level) -> float:
    """Spread of a count around its level, never below Poisson noise: quiet keys don't alert on noise."""
    return max(MAD_TO_SIGMA * level.dev, math.sqrt(max(level.mean, 0.0)), 1.0)


def update_level(level: Level | None, x: float, alpha: float, clip: float, weight: float = 1.0,
                 dev_alpha: float | None = None) -> Level:
    """Fold ``x`` in with weight ``alpha * weight``, winsorised to ``clip`` scales around the level.

    While the level is young (fewer than ``1 / alpha`` values) it uses a running mean, so the
    first windows set it quickly instead of dragging a prior along. A smaller ``dev_alpha`` keeps
    the spread of a long stretch (bursty series: quiet nights must not make every burst look new)
    while the level still follows the last hours.
    """
    if level is None:
        return Level(mean=x, dev=0.0, n=1)
    w = min(max(weight, 0.0), 1.0)
    rate = max(alpha, 1.0 / (level.n + 1)) * w
    dev_rate = max(alpha if dev_alpha is None else dev_alpha, 1.0 / (level.n + 1)) * w
    scale = count_scale(level)
    xc = x if level.n < YOUNG else min(max(x, level.mean - clip * scale), level.mean + clip * scale)
    mean = level.mean + rate * (xc - level.mean)
    dev = level.dev + dev_rate * (abs(xc - level.mean) - level.dev)
    return Level(mean=mean, dev=dev, n=level.n + 1)


def decay_level(level: Level, windows: int, alpha: float) -> Level:
    """Windows with no messages at all are never closed: fold them in as zeros, at most a day's worth."""
    if windows <= 0:
        return level
    keep = (1 - alpha) ** min(windows, 1440)
    return Level(mean=level.mean * keep, dev=level.dev, n=level.n + windows)


def count_z(x: float, level: Level) -> float:
    """How many robust scales ``x`` lies above its level, and never more than Poisson noise allows:
    5 negatives against a mean of 1 is 4 scales, but happens by chance every few hundred windows."""
    robust = (x - level.mean) / count_scale(level)
    k, lam = round(x), max(level.mean, 0.05)
    if robust <= 0 or lam > EXACT_MAX or k <= lam:
        return robust
    return min(robust, _tail_to_z(_poisson_sf(k, lam)))


def _poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam): one minus the terms below k."""
    term, below = math.exp(-lam), 0.0
    for i in range(k):
        below += term
        term *= lam / (i + 1)
    return max(1.0 - below, term)  # past the float floor, the first tail term is the tail's scale


def update_share(base: float, share: float, count: int, alpha: float, min_volume: int, clip: float) -> float:
    """EWMA of the negative share weighted by volume, each step clipped to ``clip`` around the baseline."""
    weight = alpha * min(1.0, count / max(min_volume, 1))
    step = min(max(share - base, -clip), clip)
    return base + weight * step


def binomial_z(share: float, count: int, baseline: float) -> float:
    """How surprising a window's negative share is under the baseline share, as a one-sided z-score.

    From the exact binomial tail for small windows, where the normal approximation overstates surprise.
    """
    if count == 0:
        return 0.0
    p = min(max(baseline, 0.02), 0.98)
    k = round(share * count)
    if count > EXACT_MAX or k <= p * count:  # large windows (or no excess): normal, continuity-corrected
        excess = k - p * count
        return math.copysign(max(abs(excess) - 0.5, 0.0), excess) / math.sqrt(p * (1 - p) * count)
    return _tail_to_z(_binomial_sf(k, count, p))


def _binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space."""
    lp, lq = math.log(p), math.log1p(-p)
    lc = math.lgamma(n + 1)
    return min(1.0, sum(math.exp(lc - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
                        for i in range(k, n + 1)))


def _tail_to_z(tail: float) -> float:
    """The z whose upper normal tail is ``tail`` (bisection on erfc: exact enough, no scipy)."""
    if tail <= 1e-300:
        return 37.0
    lo, hi = -10.0, 37.0
    for _ in range(32):  # 47 / 2 ** 32: far below any threshold's precision
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > tail:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def logistic(z: float, centre: float, width: float) -> float:
    """Map a z-score to [0, 1]: 0.5 at ``centre``; NAB and dashboards want a bounded score."""
    t = (z - centre) / width
    if t < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-t))
