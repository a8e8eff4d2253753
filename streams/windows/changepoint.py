"""Which baselines a closed window breaks, and the change-point evidence that decides a key fires.

Two tests per window, both exact tails on small counts:

- **share**: the binomial tail of the window's negatives at the baseline share (``baseline.binomial_z``);
- **volume**: the window's negatives against what a calm window *of this size* holds, the larger of the
  key's usual negative count and the baseline share of this window's volume. A burst at the usual mix
  raises the count and its expectation together and is no evidence; negatives outrunning the rest are.
  Counts are over-dispersed (bursty keys): the tail is a negative binomial whose dispersion comes from the
  key's own spread, a Poisson when the spread is no wider than Poisson noise.

A window that breaks a test's effect-size bars adds its z, less ``change_drift``, to the key's evidence, a
one-sided CUSUM (Page's test); windows that break nothing take ``change_drift`` off. The key fires when
the evidence reaches ``z`` and the negatives in excess outlast one window's length (spread.py): a burst of
a minute, however sharp, is a blip and brings the key to the bar, no further; a surge fires on its second
window if sharp, else when its evidence adds up.

A key too quiet for one window to tell (a few messages a minute) never passes the minimum volume; for it a
second CUSUM adds up each window's log-likelihood ratio of a share at the firing bar (baseline plus
``min_delta``) against the baseline, at most a quarter of ``shift_nats`` a window, so only a run of four
windows or more, holding ``min_volume`` negatives, can fire it: never a blip, which spans two at most.

Windows far off the baselines either way (building evidence, or a flood of positive messages) teach the
baselines at a tenth of the rate, so a surge does not become the bar it is judged by and the end of a
positive flood does not look like a negative surge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import special

from streams.windows import spread
from streams.windows.baseline import MAD_TO_SIGMA, Level, binomial_z, tail_to_z
from tonewatch.core.sections import DetectorSettings

MAX_DISPERSION = 1.0  # variance at most e + e^2: wider spreads are learnt from a surge the clip let in
RELAXED = 0.5  # a window adds evidence once past half the effect-size bars (the resolve hysteresis' bars)
SHIFT_MIN_WINDOWS = 4  # one window adds at most this share of shift_nats: a blip spans two windows at most
OUTLIER_WEIGHT = 0.1  # outlier windows teach the baselines at a tenth of the rate: a lasting shift is learnt


@dataclass(frozen=True)
class Verdict:
    """Which baselines a window breaks (``share``, ``volume``, ``both`` or None) and the larger z of those."""

    reason: str | None
    z: float


def dispersion(level: Level) -> float:
    """Negative-binomial dispersion phi (variance = mean + phi * mean^2) from a level's spread; 0: Poisson."""
    mean = level.mean
    if not (mean > 0 and math.isfinite(level.dev)):
        return 0.0
    var = (MAD_TO_SIGMA * level.dev) ** 2
    return min(max((var - mean) / (mean * mean), 0.0), MAX_DISPERSION)


def expected_negatives(volume: Level, base: float, count: int) -> float:
    """What a calm window of ``count`` messages holds: the key's usual negatives, or the baseline share of
    this window's volume when that is more (a burst at the usual mix)."""
    return max(volume.mean, base * count, 0.05)


def negatives_z(negative: int, expected: float, phi: float) -> float:
    """One-sided z of ``negative`` or more under a negative binomial of mean ``expected``, dispersion ``phi``.

    Non-finite input is no evidence: 0.
    """
    if not (math.isfinite(expected) and math.isfinite(phi) and negative > expected > 0):
        return 0.0
    if phi <= 1e-9:  # Poisson: P(X >= k) is the regularised lower incomplete gamma
        return tail_to_z(float(special.gammainc(float(negative), expected)))
    r = 1.0 / phi
    return tail_to_z(float(special.betainc(float(negative), r, expected / (r + expected))))


def judge(base: float, volume: Level | None, count: int, negative: int, *, min_volume: int, min_delta: float,
          min_ratio: float, volume_min_windows: int, z: float | None = None, excess: float | None = None) -> Verdict:
    """The tests whose effect-size bars the window passes (and, with ``z``, whose z reaches it).

    ``excess`` is the share's effect size: the corrected share over its corrected baseline (prevalence.py),
    so a surge that chat's model under-counts is measured at its true size; the z stays the counted share's
    binomial tail against the counted baseline, the same test in the model's own units. Without it, the
    counted share's excess.
    """
    share_z = -math.inf
    if count >= min_volume and (negative / count - base if excess is None else excess) >= min_delta:
        share_z = binomial_z(negative / count, count, base)
    volume_z = -math.inf
    if volume is not None and volume.n >= volume_min_windows and negative >= min_volume:
        expected = expected_negatives(volume, base, count)
        if negative >= min_ratio * expected:
            volume_z = negatives_z(negative, expected, dispersion(volume))
    share = share_z > -math.inf and (z is None or share_z >= z)
    vol = volume_z > -math.inf and (z is None or volume_z >= z)
    reason = "both" if share and vol else "share" if share else "volume" if vol else None
    best = max(share_z if share else -math.inf, volume_z if vol else -math.inf)
    return Verdict(reason, best if reason else 0.0)


def accumulate(evidence: float, missing: int, verdict: Verdict, drift: float) -> float:
    """The key's CUSUM after a window: windows with no messages (``missing``) and windows that break
    nothing each take ``drift`` off; a window that breaks a baseline adds its z less ``drift``."""
    evidence = max(evidence - drift * max(missing, 0), 0.0)
    gain = verdict.z if verdict.reason is not None and math.isfinite(verdict.z) else 0.0
    return max(evidence + gain - drift, 0.0)


def shift_llr(base: float, count: int, negative: int, min_delta: float) -> float:
    """Log-likelihood ratio (nats) of the window's negatives under the share at the firing bar,
    ``base + min_delta``, against the baseline share (binomial): what the slow CUSUM adds up.

    Share only: the larger of two ratios per window drains too slowly on calm keys (one test's loss is
    the other's gain), and a quiet key's negative-volume surge is sharp enough for the z evidence.
    """
    p0 = min(max(base, 0.01), 0.98)
    p1 = min(p0 + min_delta, 0.99)
    return negative * math.log(p1 / p0) + (count - negative) * math.log((1 - p1) / (1 - p0))


Run = tuple[float, int]


def combined_z(run: Run) -> float:
    """Stouffer's combination of the run's window z's: the surge's size, whichever window confirmed it.
    Two windows at z 4.4 are as unlikely together as one at 6.2."""
    total, windows = run
    return total / math.sqrt(windows) if windows > 0 else 0.0


@dataclass(frozen=True)
class Step:
    """A key's change-point state after one closed window, and what it says."""

    evidence: float  # z-CUSUM: sharp surges, a window or two
    shift: float  # log-likelihood CUSUM, nats: slow surges on keys too quiet for one window to tell
    shift_negatives: int  # negatives in the windows since ``shift`` left 0
    reason: str | None  # share, volume or both when the key fires on this window
    z: float  # the firing score: the run's combined z (a shift's nats as the z of a normal tail as unlikely)
    outlier: bool  # far off the baselines either way: learnt slowly
    run: Run = (0.0, 0)  # the z's summed, and the windows, since ``evidence`` left 0


def step(evidence: float, shift: float, shift_negatives: int, missing: int, base: float, volume: Level | None,
         count: int, negative: int, min_volume: int, cfg: DetectorSettings, run: Run = (0.0, 0),
         excess: float | None = None, slices: spread.Slices | None = None) -> Step:
    """Fold one closed window into the key's evidence and say whether the key fires on it; ``excess``: see
    :func:`judge`. ``slices``: the last closed windows' slices, this one last (spread.py); neither CUSUM fires
    on negatives that fit in one window's length (the z evidence then waits at the bar). None: no such check."""
    bars: dict[str, Any] = {"min_volume": min_volume, "volume_min_windows": cfg.volume_min_windows,
                            "excess": excess}
    loose = judge(base, volume, count, negative, min_delta=cfg.min_delta * RELAXED,
                  min_ratio=1 + (cfg.volume_min_ratio - 1) * RELAXED, **bars)
    full = judge(base, volume, count, negative, min_delta=cfg.min_delta, min_ratio=cfg.volume_min_ratio, **bars)
    evidence = accumulate(evidence, missing, loose, cfg.change_drift)
    gain = shift_llr(base, count, negative, cfg.min_delta)
    shift = max(shift + min(gain, cfg.shift_nats / SHIFT_MIN_WINDOWS), 0.0)
    shift_negatives = shift_negatives + negative if shift > 0 else 0
    outlier = (loose.reason is not None and loose.z > cfg.change_drift) or (
        count >= min_volume and -(negative / count - base if excess is None else excess) >= cfg.min_delta * RELAXED
        and binomial_z(negative / count, count, base) <= -cfg.change_drift)
    window_z = loose.z if loose.reason is not None and math.isfinite(loose.z) else 0.0
    run = (run[0] + window_z, run[1] + 1) if evidence > 0 else (0.0, 0)
    if full.reason is not None and evidence >= cfg.z:
        seen = min(run[1], spread.SUSTAIN_WINDOWS) * spread.SLICES
        if slices is None or spread.outlasts(slices[-seen:], base):
            return Step(0.0, 0.0, 0, full.reason, max(full.z, combined_z(run)), outlier)
        evidence = cfg.z  # a burst no longer than a window brings the key to the bar, no further
    if shift >= cfg.shift_nats and gain > 0 and shift_negatives >= min_volume and (
            slices is None or spread.outlasts(slices, base)):
        return Step(0.0, 0.0, 0, "share", math.sqrt(2 * shift), outlier)
    return Step(evidence, shift, shift_negatives, None, 0.0, outlier, run)
