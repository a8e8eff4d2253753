"""Simulated keys for ``tonewatch eval scenarios``: calm traffic, and per kind what happens to it.

Every key has a calm flow: a Poisson volume per window around a daily cycle and a binomial negative share
around the key's own normal. A kind adds something on top, at known times:

must alert (a negative surge, 5 to 20 windows, after a warm-up of up to 2 hours)
  share      the negative share jumps by 0.45 at the usual volume
  negvolume  negatives arrive at 4x their usual rate (at least 5 extra a window), the other messages as usual
  both       the volume quadruples and the share jumps by 0.45
  quiet      a ticker with about one message a window gains 6-10 extra negatives a window
  chat       a chat source key (dimension "source"): the true share jumps by 0.45 at 1.5x volume, but chat's
             sentiment model labels a true negative negative only half the time, so the counted share
             rises by about half as much (its p_negative: 0.8 labelled, 0.3 missed, 0.08 otherwise; the
             detector corrects it with those error rates, as the stream does with a version's measured ones)
  pair       two tickers surge (share) in the same windows

must not alert
  calm       nothing
  positive   every 90 minutes, 5-20 windows of 2-5x volume whose extra messages are all non-negative
  blip       every 30 minutes, 3-8 extra negative messages within one 60 s span that starts anywhere (so it
             may straddle two windows), the volume otherwise normal: one author or one reply thread, over
             before anyone could act on a page; a desk does not want to be paged for it
  spike      the same, 10-60 extra negatives within one minute: far past six sigma on its own, still over
             within the minute (one story pulled, one bot), so still no page
  burst      every 90 minutes, 5-20 windows of 4x volume at the key's usual share: the negative count
             quadruples with the volume, the mix does not change
  seasonal   a ticker on the market clock for two days: 0.3x overnight, 1x in regular hours, 3x in the
             opening and closing half hours (14:30 and 20:30 UTC), always at its usual share, so its
             negatives rise 3x at each open too; from the second day on a baseline that learns the clock
             (tonewatch/evaluation/seasonal.py) has seen an open before
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streams.windows.detector import TrendEvent
from streams.windows.prevalence import Rates, adjusted

MUST_ALERT = ("share", "negvolume", "both", "quiet", "chat", "pair")
MUST_NOT = ("calm", "positive", "blip", "spike", "burst", "seasonal")
KINDS = MUST_ALERT + MUST_NOT
DAY = 86400.0
BLIP_S = 60.0
BLIP_SIZES = {"blip": (3, 8), "spike": (10, 60)}  # extra negatives within one BLIP_S, inclusive
# p_negative of a labelled negative, a missed true negative and a non-negative message (chat's model)
MISSED_P = (0.8, 0.3, 0.08)
SEASONAL_DAYS = 2  # each open and close comes again: a learnt market clock must not fire on them


@dataclass(frozen=True)
class Surge:
    """Something injected into a key: a surge that must alert, or an episode that must not."""

    key: str
    kind: str
    start: float
    end: float


@dataclass
class Plan:
    """One simulated key: expected messages, true negative share and extras per window."""

    dimension: str
    key: str
    kind: str
    lam: np.ndarray  # expected calm messages per window
    p: np.ndarray  # true negative share of them
    extra_neg: np.ndarray = field(default_factory=lambda: np.zeros(0))  # expected extra negatives per window
    extra_pos: np.ndarray = field(default_factory=lambda: np.zeros(0))  # expected extra non-negatives
    blips: list[tuple[float, int]] = field(default_factory=list)  # (start, negatives) within BLIP_S
    label_recall: float = 1.0  # chance that a true negative is labelled negative
    injected: list[Surge] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not len(self.extra_neg):
            self.extra_neg = np.zeros_like(self.lam)
        if not len(self.extra_pos):
            self.extra_pos = np.zeros_like(self.lam)


def _calm(rng: np.random.Generator, windows: int, window_s: int, lo: float = 4, hi: float = 60
          ) -> tuple[np.ndarray, np.ndarray]:
    """A log-uniform rate per window at the daily mean, a +-50 % daily cycle, a share in [0.05, 0.3]."""
    rate = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    share = float(rng.uniform(0.05, 0.3))
    phase = float(rng.uniform(0, 2 * math.pi))
    starts = np.arange(windows) * window_s
    return rate * (1 + 0.5 * np.sin(2 * math.pi * starts / DAY + phase)), np.full(windows, share)


def _span(rng: np.random.Generator, windows: int, window_s: int) -> tuple[int, int]:
    """A surge's first window and its length: after the warm-up, 5 to 20 windows."""
    warm = min(2 * 3600 // window_s, windows // 3)  # the baselines learn first
    first = int(rng.integers(warm, windows - 30))
    return first, int(rng.integers(5, 21))


def _episodes(rng: np.random.Generator, windows: int, window_s: int, every_s: float) -> list[tuple[int, int]]:
    """Must-not episodes of 5 to 20 windows, one somewhere in each ``every_s`` slot after the warm-up."""
    warm = min(2 * 3600 // window_s, windows // 3)
    slot = int(every_s // window_s)
    return [(int(rng.integers(s, s + slot - 20)), int(rng.integers(5, 21)))
            for s in range(warm, windows - slot + 1, slot)]


def _market(windows: int, window_s: int) -> np.ndarray:
    """Volume multiplier on the market clock: 3x in the opening and closing half hours, 0.3x outside hours."""
    sod = (np.arange(windows) * window_s) % DAY
    out = np.full(windows, 0.3)
    out[(sod >= 14.5 * 3600) & (sod < 21 * 3600)] = 1.0
    out[((sod >= 14.5 * 3600) & (sod < 15 * 3600)) | ((sod >= 20.5 * 3600) & (sod < 21 * 3600))] = 3.0
    return out


def plan_keys(rng: np.random.Generator, kind: str, index: int, windows: int, window_s: int) -> list[Plan]:
    """The key(s) of one scenario of ``kind``: one key, or two for ``pair``."""
    key = f"{kind[:4].upper()}{index:03d}"
    if kind == "seasonal":  # whole days, so every open and close is in it
        windows = max(windows, int(SEASONAL_DAYS * DAY // window_s))
        lam, p = _calm(rng, windows, window_s)
        lam = lam.mean() * _market(windows, window_s)
        return [Plan("ticker", key, kind, lam, p)]
    if kind == "pair":
        first, length = _span(rng, windows, window_s)
        plans = []
        for side in "AB":
            lam, p = _calm(rng, windows, window_s)
            p[first:first + length] = np.minimum(0.95, p[first:first + length] + 0.45)
            plans.append(Plan("ticker", key + side, kind, lam, p,
                              injected=[Surge(key + side, kind, first * window_s, (first + length) * window_s)]))
        return plans
    if kind == "quiet":
        lam, p = _calm(rng, windows, window_s, 0.7, 1.4)
    elif kind == "chat":
        lam, p = _calm(rng, windows, window_s, 10, 60)
        p = p + 0.1  # chat is more negative than news, before its model under-counts it
    else:
        lam, p = _calm(rng, windows, window_s)
    plan = Plan("source" if kind == "chat" else "ticker", key, kind, lam, p,
                label_recall=0.5 if kind == "chat" else 1.0)
    _inject(rng, plan, windows, window_s)
    return [plan]


def _inject(rng: np.random.Generator, plan: Plan, windows: int, window_s: int) -> None:
    kind, lam, p = plan.kind, plan.lam, plan.p
    if kind in MUST_ALERT:
        first, length = _span(rng, windows, window_s)
        spans = [(first, length)]
    elif kind in ("positive", "burst"):
        spans = _episodes(rng, windows, window_s, 5400)
    else:
        spans = []
    for first, length in spans:
        s = slice(first, first + length)
        plan.injected.append(Surge(plan.key, kind, first * window_s, (first + length) * window_s))
        if kind in ("share", "chat", "both"):
            p[s] = np.minimum(0.95, p[s] + 0.45)
        if kind in ("both", "burst"):
            lam[s] *= 4
        elif kind == "chat":
            lam[s] *= 1.5
        elif kind == "negvolume":
            plan.extra_neg[s] = np.maximum(3 * p[s] * lam[s], 5)  # 4x, and at least a handful a window
        elif kind == "quiet":
            plan.extra_neg[s] = rng.uniform(6, 10)
        elif kind == "positive":
            plan.extra_pos[s] = rng.uniform(1, 4) * lam[s]
    if kind in BLIP_SIZES:
        warm = min(2 * 3600, windows * window_s / 3)
        lo, hi = BLIP_SIZES[kind]
        for slot in np.arange(warm, windows * window_s - 1800, 1800):
            t0 = float(slot + rng.uniform(0, 1800 - BLIP_S))
            plan.blips.append((t0, int(rng.integers(lo, hi + 1))))
            plan.injected.append(Surge(plan.key, kind, t0, t0 + BLIP_S))


def key_events(rng: np.random.Generator, plan: Plan, window_s: int) -> list[TrendEvent]:
    """Every message of the key in event-time order, as the detector's trend events."""
    starts = np.arange(len(plan.lam)) * float(window_s)
    parts_ts, parts_neg = [], []
    for lam, share in ((plan.lam, plan.p), (plan.extra_neg, None), (plan.extra_pos, None)):
        n = rng.poisson(lam)
        parts_ts.append(np.repeat(starts, n) + rng.uniform(0, window_s, int(n.sum())))
        negative = rng.random(int(n.sum())) < np.repeat(share, n) if share is not None else None
        parts_neg.append(negative if negative is not None else np.full(int(n.sum()), lam is plan.extra_neg))
    for t0, k in plan.blips:
        parts_ts.append(t0 + rng.uniform(0, BLIP_S, k))
        parts_neg.append(np.ones(k, dtype=bool))
    ts, truth = np.concatenate(parts_ts), np.concatenate(parts_neg)
    neg = truth
    if plan.label_recall < 1:  # the model misses some true negatives: they read as not negative
        neg = truth & (rng.random(len(truth)) < plan.label_recall)
    order = np.argsort(ts, kind="stable")
    dim, key = plan.dimension, plan.key
    source = "chat" if dim == "source" else "news"
    if plan.label_recall >= 1:
        return [TrendEvent(dim, key, t, b, 0.9 if b else 0.1, f"{key}-{i}", "", source)
                for i, (t, b) in enumerate(zip(ts[order].tolist(), neg[order].tolist(), strict=True))]
    # an under-counting model's probabilities: a missed negative still scores above the rest, and the
    # stream corrects each message with the version's error rates for its source (prevalence.py)
    p = np.where(neg, MISSED_P[0], np.where(truth, MISSED_P[1], MISSED_P[2]))
    rates = Rates(plan.label_recall * MISSED_P[0] + (1 - plan.label_recall) * MISSED_P[1], MISSED_P[2])
    return [TrendEvent(dim, key, t, b, q, f"{key}-{i}", "", source, adjusted=adjusted(q, b, rates))
            for i, (t, b, q) in enumerate(zip(ts[order].tolist(), neg[order].tolist(), p[order].tolist(),
                                              strict=True))]
