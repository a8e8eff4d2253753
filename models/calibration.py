"""Temperature scaling, its calibration error, and the per-source rates that correct a window's negative share.

One temperature T per version (Guo et al. 2017), fitted on the validation split by minimising the NLL of the
served probabilities: softmax(log p / T) equals softmax(logits / T), so T applies to what a version already
serves and the ONNX graph and torch weights stay as they are. Argmax, and so every label, is unchanged.
Pure numpy/scipy; the version-level steps are in ``models.train``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.windows.prevalence import rates_from

ECE_BINS = 15  # equal-width bins on the max probability, as Guo et al. report ECE
T_BOUNDS = (0.05, 20.0)
MIN_NEGATIVES = 20  # a source with fewer validation negatives has no rates of its own: its mean is too noisy
EPS = 1e-12  # floor before log: a served probability of exactly 0 must not become -inf


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def _scaled_log_softmax(log_p: np.ndarray, temperature: float) -> np.ndarray:
    z = log_p / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Served probabilities rescaled by T (T > 1 softens over-confident ones); dtype kept."""
    out = np.exp(_scaled_log_softmax(_log(probs), temperature))
    return out.astype(probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64)


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels after scaling by ``temperature``."""
    log_q = _scaled_log_softmax(_log(probs), temperature)
    return float(-log_q[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``T_BOUNDS`` that minimises the NLL on labelled rows (bounded Brent search: NLL is smooth in T)."""
    from scipy.optimize import minimize_scalar

    log_p, y = _log(probs), np.asarray(labels)
    rows = np.arange(len(y))

    def loss(t: float) -> float:
        return float(-_scaled_log_softmax(log_p, t)[rows, y].mean())

    res = minimize_scalar(loss, bounds=T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy - confidence| per equal-width bin of the max probability,
    weighted by the bin's share of rows."""
    probs = np.asarray(probs, dtype=np.float64)
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        rows = which == b
        total += rows.sum() * abs(right[rows].mean() - conf[rows].mean())
    return float(total / len(conf)) if len(conf) else 0.0


def calibration_record(
    val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """The manifest's ``calibration``: T fitted on val (probs, labels); ECE on test before and after."""
    temperature = fit_temperature(*val)
    test_probs, test_labels = test
    return {"temperature": round(temperature, 4), "fit_split": "val", "ece_split": "test", "ece_bins": ECE_BINS,
            "ece_before": round(ece(test_probs, test_labels), 4),
            "ece_after": round(ece(apply_temperature(test_probs, temperature), test_labels), 4),
            "nll_val_before": round(nll(*val), 4), "nll_val_after": round(nll(*val, temperature), 4)}


def source_rates(
    p_negative: np.ndarray, is_negative: np.ndarray, sources: Sequence[str], min_negatives: int = MIN_NEGATIVES
) -> dict[str, Any]:
    """The manifest's ``prevalence``: PACC rates [tpr, fpr] on validation rows, for all and per source.

    A source with fewer than ``min_negatives`` negatives takes the rates of all, and is listed in ``fallback``;
    rates that cannot be measured (no negatives, or nothing else) are stored as null, not NaN (strict JSON).
    """
    p, truth, src = np.asarray(p_negative, dtype=np.float64), np.asarray(is_negative, dtype=bool), np.asarray(sources)
    overall = rates_from(p.tolist(), truth.tolist())
    measured = math.isfinite(overall.tpr)
    rates: dict[str, list[float] | None] = {"all": [round(overall.tpr, 6), round(overall.fpr, 6)] if measured else None}
    negatives, fallback = {"all": int(truth.sum())}, []
    for source in dict.fromkeys(src.tolist()):
        rows = src == source
        negatives[source] = int(truth[rows].sum())
        if negatives[source] < min_negatives or negatives[source] == rows.sum():
            rates[source] = rates["all"]
            fallback.append(source)
            continue
        r = rates_from(p[rows].tolist(), truth[rows].tolist())
        rates[source] = [round(r.tpr, 6), round(r.fpr, 6)]
    return {"label": "negative", "split": "val", "min_negatives": min_negatives, "rates": rates,
            "negatives": negatives, "fallback": fallback}
