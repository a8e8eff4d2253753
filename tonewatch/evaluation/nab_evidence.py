"""One point's evidence against its expectation, either way, for the NAB adapter (``nab.py``, issue #28).

A series is one of three kinds, read from its values (a property of the metric, not a setting per file):

- **counts** (every value a non-negative integer: tweets, requests): the stream's volume evidence, a robust z
  capped by the negative-binomial tail at the level's own dispersion, and the count must reach
  ``min_ratio`` times its expectation; a drop is the lower tail, at most ``1 / min_ratio`` of it;
- **positive** metrics (no value below 0: CPU, latency, temperature, prices) and **signed** ones: a robust z
  on the level's long-run deviation, either way, with no ratio bar (a 20 % fall of a temperature is
  an event). Only positive series and counts get the multiplicative market clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from scipy import special

from streams.windows.baseline import MAD_TO_SIGMA, Level, count_z, tail_to_z
from streams.windows.changepoint import dispersion, negatives_z

REL_FLOOR = 0.001  # a metric's scale is at least this share of its level: a flat line's noise is not zero


class Kind(StrEnum):
    COUNTS = "counts"
    POSITIVE = "positive"
    SIGNED = "signed"


def series_kind(values: Sequence[float]) -> Kind:
    """What the values are: counts, a positive metric, or a signed one (non-finite values are ignored)."""
    finite = [v for v in values if math.isfinite(v)]
    if any(v < 0 for v in finite):
        return Kind.SIGNED
    return Kind.COUNTS if all(v == round(v) for v in finite) else Kind.POSITIVE


@dataclass(frozen=True)
class Evidence:
    """A point's z above and below its expectation, and whether it passes the size bar each way."""

    up: float = 0.0
    down: float = 0.0
    big_up: bool = False
    big_down: bool = False

    def toward(self, direction: int) -> tuple[float, bool]:
        return (self.up, self.big_up) if direction > 0 else (self.down, self.big_down)


def point_z(x: float, level: Level) -> float:
    """Robust z of a count, never more than its negative-binomial tail at the level's dispersion allows."""
    z = count_z(x, level)
    if x > level.mean and math.isfinite(x):
        z = min(z, negatives_z(round(x), level.mean, dispersion(level)))
    return z


def drop_z(x: float, level: Level) -> float:
    """z of a count this low or lower: the robust z below the level, capped by the negative-binomial
    lower tail (0 when the count is not below its level)."""
    if not (math.isfinite(x) and 0 <= x < level.mean):
        return 0.0
    robust = -count_z(x, level)
    phi, k = dispersion(level), float(math.floor(x))
    if phi <= 1e-9:  # Poisson: P(X <= k) = Q(k + 1, mean)
        tail = float(special.gammaincc(k + 1.0, level.mean))
    else:
        r = 1.0 / phi
        tail = float(special.betainc(r, k + 1.0, r / (r + level.mean)))
    return max(min(robust, tail_to_z(tail)), 0.0)


def count_evidence(x: float, level: Level, min_ratio: float, drops: bool) -> Evidence:
    """A count's evidence: up when it reaches ``min_ratio`` x its level, down (if ``drops``) at 1 / ratio."""
    up = point_z(x, level)
    down = drop_z(x, level) if drops else 0.0
    return Evidence(up=max(up, 0.0), down=down, big_up=x >= min_ratio * level.mean,
                    big_down=drops and x * min_ratio <= level.mean)


def metric_scale(level: Level) -> float:
    """A metric's spread around its level: the long-run absolute deviation as a sigma, floored."""
    return max(MAD_TO_SIGMA * level.dev, REL_FLOOR * abs(level.mean), 1e-9)


def metric_evidence(x: float, level: Level, bar: float, falls: bool = True) -> Evidence:
    """A metric's robust z, up and (if ``falls``) down; past ``bar`` it counts as big (the relaxed half of the
    firing bar)."""
    if not math.isfinite(x) or not math.isfinite(level.mean):
        return Evidence()
    z = (x - level.mean) / metric_scale(level)
    up, down = max(z, 0.0), max(-z, 0.0) if falls else 0.0
    return Evidence(up=up, down=down, big_up=up >= bar, big_down=down >= bar)
