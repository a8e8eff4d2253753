"""Robust, incremental baselines: pure math shared by the stream detector and its evaluations.

A few floats per key (an EWMA location and absolute deviation), updated winsorised so one outlier window
moves a baseline by a bounded step (docs/decisions/2026-12-07-two-baselines.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

MAD_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation to standard deviation for a normal
EXACT_MAX = 400  # windows up to this many messages get the exact binomial tail
YOUNG = 3  # values folded in unclipped, before the deviation means anything
Z_MAX = 37.0  # about the z of a tail at the float floor (1e-300): past it every tail looks alike


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
                 dev_alpha: float | None = None, scale: float | None = None) -> Level:
    """Fold ``x`` in with weight ``alpha * weight``, winsorised to ``clip`` scales around the level.

    While the level is young (fewer than ``1 / alpha`` values) it uses a running mean, so the
    first windows set it quickly instead of dragging a prior along. A smaller ``dev_alpha`` keeps
    the spread of a long stretch (bursty series: quiet nights must not make every burst look new)
    while the level still follows the last hours. ``scale`` replaces the count scale the clip is
    measured in (a metric's values are not counts: Poisson noise means nothing to them).
    """
    if level is None:
        return Level(mean=x, dev=0.0, n=1)
    w = min(max(weight, 0.0), 1.0)
    rate = max(alpha, 1.0 / (level.n + 1)) * w
    dev_rate = max(alpha if dev_alpha is None else dev_alpha, 1.0 / (level.n + 1)) * w
    scale = count_scale(level) if scale is None else scale
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
    5 negatives against a mean of 1 is 4 scales, but happens by chance every few hundred windows.

    A NaN count or level (a corrupt state) is no evidence: 0, never an exception that stalls the agent.
    """
    robust = (x - level.mean) / count_scale(level)
    if math.isnan(robust):
        return 0.0
    lam = max(level.mean, 0.05)
    k = round(x) if math.isfinite(x) else None  # +inf: a tail of 0, so Z_MAX below
    if robust <= 0 or lam > EXACT_MAX or (k is not None and k <= lam):
        return robust
    return min(robust, tail_to_z(0.0 if k is None else _poisson_sf(k, lam)))


def _poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), k >= 1: the regularised lower incomplete gamma P(k, lam).

    A closed form, so a count of 10^9 costs what 5 does (summing the terms below k took k steps, #28).
    """
    return float(special.gammainc(float(k), lam))  # float: a count past int64 would not coerce


def update_share(base: float, share: float, count: int, alpha: float, min_volume: int, clip: float) -> float:
    """EWMA of the negative share weighted by volume, each step clipped to ``clip`` around the baseline.

    The clip is in messages, ``clip`` times ``min_volume`` at least: a window of one or two messages has a
    share of 0 or 1, and clipping only its rises pulled the baseline of a quiet key well below its share.
    """
    weight = alpha * min(1.0, count / max(min_volume, 1))
    clip = clip * max(1.0, min_volume / count) if count > 0 else clip
    step = min(max(share - base, -clip), clip)
    return base + weight * step


def binomial_z(share: float, count: int, baseline: float) -> float:
    """How surprising a window's negative share is under the baseline share, as a one-sided z-score.

    From the exact binomial tail for small windows, where the normal approximation overstates surprise.
    A non-finite share or baseline (a corrupt state) is no evidence: 0.
    """
    if count <= 0 or not (math.isfinite(share) and math.isfinite(baseline)):
        return 0.0
    p = min(max(baseline, 0.02), 0.98)
    k = round(share * count)
    if count > EXACT_MAX or k <= p * count:  # large windows (or no excess): normal, continuity-corrected
        excess = k - p * count
        return math.copysign(max(abs(excess) - 0.5, 0.0), excess) / math.sqrt(p * (1 - p) * count)
    return tail_to_z(_binomial_sf(k, count, p))


def _binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), k >= 1: a regularised incomplete beta, in constant time."""
    return float(special.bdtrc(k - 1, n, p))


def tail_to_z(tail: float) -> float:
    """The z whose upper normal tail is ``tail`` (the normal quantile), within [-10, Z_MAX]."""
    if math.isnan(tail):
        return 0.0
    if tail <= 1e-300:
        return Z_MAX
    return min(max(-float(special.ndtri(min(tail, 1.0))), -10.0), Z_MAX)


def logistic(z: float, centre: float, width: float) -> float:
    """Map a z-score to [0, 1]: 0.5 at ``centre``; NAB and dashboards want a bounded score."""
    t = (z - centre) / width
    if not t > -60:  # and NaN: a score NAB or a dashboard can read
        return 0.0
    return 1.0 / (1.0 + math.exp(-t))
