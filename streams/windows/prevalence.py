"""A window's true negative share, corrected for the sentiment model's error rates (pure math).

Counting the model's negative labels (classify and count) is biased: a model that is right 85% of the time
over-states negativity where true negatives are rare and under-states it where they are common, and chat,
whose negatives the model misses more often, looks calmer than it is. Probabilistic adjusted classify and
count (PACC; Bella et al. 2010, as QuaPy implements it) inverts the model's average behaviour:

    E[p_negative] = fpr + share * (tpr - fpr)   =>   share = (mean p_negative - fpr) / (tpr - fpr)

where ``tpr`` is the mean calibrated p_negative over truly negative validation messages and ``fpr`` the mean
over the rest, measured per source (chat and news differ). The estimate is linear in each message's
p_negative, so each message is adjusted with its own model version's and source's rates and a window sums
them: windows stay sums that merge in any order, and mixed sources or versions need no special case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MIN_GAP = 0.05  # tpr - fpr below this: the model barely separates the classes, so its rates are no guide


@dataclass(frozen=True)
class Rates:
    """Mean p_negative of truly negative (``tpr``) and of other (``fpr``) validation messages."""

    tpr: float
    fpr: float

    @property
    def usable(self) -> bool:
        return math.isfinite(self.tpr) and math.isfinite(self.fpr) and self.tpr - self.fpr >= MIN_GAP


def adjusted(p_negative: float, negative: bool, rates: Rates | None) -> float:
    """One message's contribution to a window's corrected negative sum.

    Without usable rates (a version with none recorded, the trivial test models) it is the label itself,
    so the corrected share is the counted share and nothing changes.
    """
    if rates is None or not rates.usable or not math.isfinite(p_negative):
        return 1.0 if negative else 0.0
    return (p_negative - rates.fpr) / (rates.tpr - rates.fpr)


def corrected_share(adjusted_sum: float, count: int) -> float:
    """The window's estimated true negative share: its adjusted mean, clipped to [0, 1]."""
    if count <= 0 or not math.isfinite(adjusted_sum):
        return 0.0
    return min(max(adjusted_sum / count, 0.0), 1.0)


def pacc(p_negatives: Iterable[float], rates: Rates) -> float:
    """The corrected share of a sample, in one call (evaluations)."""
    values = list(p_negatives)
    return corrected_share(sum(adjusted(p, False, rates) for p in values), len(values))


def rates_from(p_negatives: Iterable[float], is_negative: Iterable[bool]) -> Rates:
    """Rates measured on labelled messages: the mean p_negative of the negatives and of the rest."""
    pos: list[float] = []
    neg: list[float] = []
    for p, truth in zip(p_negatives, is_negative, strict=True):
        (pos if truth else neg).append(p)
    if not pos or not neg:
        return Rates(math.nan, math.nan)
    return Rates(sum(pos) / len(pos), sum(neg) / len(neg))
