"""A key's market clock: how busy it usually is at this time of the week, learnt online (issue #28).

Used by the NAB adapter (``nab.py``), whose signal is volume alone; the stream detector has none, since its
volume test already expects the baseline share of each window's own volume (benchmarks/detector.md).

A key's volume follows the market's clock: the open, the close, lunch, overnight, weekends. A baseline that
ignores it either fires at every open or, with a fast level that chases the clock, misses surges in quiet
hours. A **profile** is a multiplicative factor per bucket of the week, each an EWMA of count / level, so
the count a calm window holds is ``level * factor(profile, ts)`` with the level itself learnt from
``count / factor``: deseasonalised, as in multiplicative Holt-Winters.

The state is a flat tuple of floats, JSON-ready for the key's changelog record: the ``buckets`` factors
(read normalised to a mean of 1 over the week), then per bucket how many windows taught it. A bucket that few
windows taught is blended with a ``fallback`` (a sector's or the global profile, or a flat clock) by its own
count, so a new key reads the market's clock until it knows its own.

Buckets are UTC hours: 24 (hour of day, the default), 48 (hour of day on weekdays and on weekends) or 168
(hour of the week). ``offset_s`` shifts the clock (e.g. -5 h, so the weekend starts at midnight in New York).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tonewatch.core.errors import ConfigError

Profile = tuple[float, ...]

LAYOUTS = (24, 48, 168)
DEFAULT_BUCKETS = 24  # measured: 24 beat 48 and 168 on NAB realTweets (benchmarks/detector.md)
FLOOR = 0.05  # the smallest factor: an hour that was silent so far still expects a little
SEEN_CAP = 1e6  # bucket counts stop growing here: they only weigh the fallback
_HOUR, _DAY = 3600.0, 86400.0
_THURSDAY = 3  # 1970-01-01, day 0 of the epoch, was a Thursday (Monday = 0)


def new(buckets: int = DEFAULT_BUCKETS) -> Profile:
    """A profile that knows nothing: every factor 1, every bucket untaught."""
    if buckets not in LAYOUTS:
        raise ConfigError(f"market-clock buckets must be one of {LAYOUTS}, not {buckets}")
    return (1.0,) * buckets + (0.0,) * buckets


def from_json(data: Sequence[float] | None, buckets: int = DEFAULT_BUCKETS) -> Profile:
    """A profile read back from a changelog record; anything malformed (an older state, a different layout,
    a non-finite number) is a profile that knows nothing, never an error that stalls the agent."""
    try:
        values = tuple(float(v) for v in data or ())
    except (TypeError, ValueError):
        return new(buckets)
    if len(values) != 2 * buckets or not all(math.isfinite(v) and v >= 0 for v in values):
        return new(buckets)
    return values


def bucket(ts: float, buckets: int, offset_s: float = 0.0) -> int:
    """The bucket of event time ``ts`` (epoch seconds, UTC) in a layout of ``buckets``; 0 for a
    non-finite time (callers treat it as no evidence before they ask)."""
    t = ts + offset_s
    if not math.isfinite(t):
        return 0
    hour = math.floor(t / _HOUR) % 24
    day = (math.floor(t / _DAY) + _THURSDAY) % 7
    if buckets == 24:
        return hour
    if buckets == 48:
        return hour + (24 if day >= 5 else 0)
    return day * 24 + hour


def _weights(buckets: int) -> tuple[float, ...]:
    """Hours a week each bucket covers (its weight in the weekly mean)."""
    if buckets == 48:
        return (5.0,) * 24 + (2.0,) * 24
    return (1.0,) * buckets


def update(profile: Profile, ts: float, count: float, level_mean: float, *, alpha: float,
           max_ratio: float = 10.0, weight: float = 1.0, offset_s: float = 0.0) -> Profile:
    """Teach the bucket of ``ts`` that a window held ``count`` against a deseasonalised level of
    ``level_mean`` (``factor`` normalises the taught buckets to a weekly mean of 1 when it reads them).

    The ratio is capped at ``max_ratio`` (one burst on a quiet key must not make its hour look busy for
    days) and learnt at ``alpha * weight`` per window, faster (a running mean) while the bucket is young.
    Non-finite or negative input, or a level of 0, is no evidence: the profile comes back unchanged.
    """
    buckets = len(profile) // 2
    if buckets not in LAYOUTS or len(profile) != 2 * buckets:  # a malformed state: from_json makes a new one
        return profile
    if not (math.isfinite(count) and math.isfinite(level_mean) and math.isfinite(weight) and math.isfinite(ts)):
        return profile
    if count < 0 or level_mean <= 0 or weight <= 0:
        return profile
    b = bucket(ts, buckets, offset_s)
    factors, seen = list(profile[:buckets]), list(profile[buckets:])
    rate = max(alpha, 1.0 / (seen[b] + 1.0)) * min(weight, 1.0)
    factors[b] += rate * (min(count / level_mean, max_ratio) - factors[b])
    seen[b] = min(seen[b] + min(weight, 1.0), SEEN_CAP)
    return tuple(factors) + tuple(seen)


def _normalised(profile: Profile, b: int) -> float | None:
    """Bucket ``b``'s factor over the weekly mean of the taught buckets (None if none is taught).

    Normalised when read, not when learnt: rescaling the table at every update would pull each bucket
    towards its raw ratio and away again, and distort the clock's shape whenever the level is off.
    """
    buckets = len(profile) // 2
    w = _weights(buckets)
    taught = [(wi, f) for wi, f, s in zip(w, profile[:buckets], profile[buckets:], strict=True) if s > 0]
    mean = sum(wi * f for wi, f in taught) / sum(wi for wi, _ in taught) if taught else 0.0
    return profile[b] / mean if mean > 0 else None


def factor(profile: Profile, ts: float, fallback: Profile | None = None, *, min_seen: float = 24.0,
           offset_s: float = 0.0) -> float:
    """How busy the bucket of ``ts`` is against the key's level: its own factor, blended with the
    ``fallback`` profile's (or 1, a flat clock) until ``min_seen`` windows have taught the bucket.

    Never below ``FLOOR``, and 1 for a malformed profile or a non-finite time: no evidence.
    """
    buckets = len(profile) // 2
    if buckets not in LAYOUTS or len(profile) != 2 * buckets or not math.isfinite(ts):
        return 1.0
    b = bucket(ts, buckets, offset_s)
    other = _normalised(fallback, b) if fallback is not None and len(fallback) == 2 * buckets else None
    own = _normalised(profile, b)
    trust = min(profile[buckets + b] / min_seen, 1.0) if min_seen > 0 and own is not None else 0.0
    value = trust * (own or 0.0) + (1.0 - trust) * (1.0 if other is None else other)
    return max(value, FLOOR) if math.isfinite(value) else 1.0
