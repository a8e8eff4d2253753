"""Label-free drift: PSI of what a model predicts now against what it predicted on its validation split.

No labels arrive in production, so drift is read from the model's own outputs: the mix of predicted
classes and a histogram of its confidence (max probability). Pure math, no I/O: the worker feeds it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CONF_BINS = 10  # fixed equal-width bins of the max probability over [0, 1]
KINDS = ("class_mix", "confidence")
EPS = 1e-4  # floor for empty bins: PSI is undefined for a zero share


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPS) -> float:
    """Population stability index: sum (a - e) * ln(a / e); 0 is identical, > 0.2 is a real shift."""
    if len(expected) != len(actual):
        raise ValueError(f"distributions differ in length: {len(expected)} vs {len(actual)}")
    e = _normalise(expected, eps)
    a = _normalise(actual, eps)
    return float(sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True)))


def _normalise(dist: Sequence[float], eps: float) -> list[float]:
    floored = [max(float(x), eps) for x in dist]
    total = sum(floored)
    return [x / total for x in floored]


def confidence_bin(max_prob: float) -> int:
    return min(int(max_prob * CONF_BINS), CONF_BINS - 1)


def reference_from_probs(probs: np.ndarray) -> dict[str, list[float]]:
    """The manifest's ``reference``: class mix and confidence histogram of predictions (rows of probs)."""
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError("reference needs a non-empty (n, classes) probability matrix")
    n, k = probs.shape
    mix = np.bincount(probs.argmax(1), minlength=k) / n
    hist = np.bincount([confidence_bin(float(p)) for p in probs.max(1)], minlength=CONF_BINS) / n
    return {"class_mix": [round(float(x), 6) for x in mix], "confidence_hist": [round(float(x), 6) for x in hist]}


@dataclass(frozen=True)
class DriftEvent:
    """A drift above threshold, as published on the model-events topic."""

    model: str
    version: str
    kind: str
    psi: float
    window: int
    threshold: float

    def as_dict(self, at: str) -> dict[str, Any]:
        """The model-events record (``event: drift``, the schema promote/rollback events share)."""
        version: int | str = int(self.version) if self.version.isdigit() else self.version
        return {"model": self.model, "version": version, "event": "drift", "kind": self.kind, "psi": self.psi,
                "window": self.window, "threshold": self.threshold, "at": at, "by": "worker",
                "reason": f"{self.kind} PSI {self.psi:.3f} > {self.threshold} over the last {self.window} messages"}


class DriftWindow:
    """The last ``size`` predictions of one model version, compared with its reference.

    Events are rate-limited to one per kind per window: after firing, a kind stays quiet until
    ``size`` more predictions arrived, so a sustained drift gives one event per window, not per message.
    """

    def __init__(self, model: str, version: str, labels: list[str], size: int, threshold: float) -> None:
        self.model, self.version, self.labels = model, version, labels
        self.size, self.threshold = size, threshold
        self._index = {lab: i for i, lab in enumerate(labels)}
        self._items: deque[tuple[int, int]] = deque(maxlen=size)
        self._class = [0] * len(labels)
        self._conf = [0] * CONF_BINS
        self._since_event = dict.fromkeys(KINDS, size)

    def add(self, probs: dict[str, float]) -> None:
        """One prediction (label -> probability, as in a scored record)."""
        label = max(probs, key=probs.__getitem__)
        self.add_top(label, probs[label])

    def add_top(self, label: str, prob: float) -> None:
        """One prediction by its top label and that label's probability (what ``add`` would find)."""
        item = (self._index[label], confidence_bin(prob))
        if len(self._items) == self.size:
            old = self._items[0]
            self._class[old[0]] -= 1
            self._conf[old[1]] -= 1
        self._items.append(item)
        self._class[item[0]] += 1
        self._conf[item[1]] += 1
        for kind in KINDS:
            self._since_event[kind] += 1

    @property
    def full(self) -> bool:
        return len(self._items) == self.size

    def psi(self, reference: dict[str, list[float]]) -> dict[str, float]:
        """PSI per kind; empty until the window is full (a half window would cry wolf)."""
        if not self.full:
            return {}
        return {"class_mix": psi(reference["class_mix"], self._class),
                "confidence": psi(reference["confidence_hist"], self._conf)}

    def events(self, values: dict[str, float]) -> list[DriftEvent]:
        """Drift events due for these PSI values, marking them as fired."""
        out = []
        for kind, value in values.items():
            if value > self.threshold and self._since_event[kind] >= self.size:
                self._since_event[kind] = 0
                out.append(DriftEvent(self.model, self.version, kind, round(value, 4), self.size, self.threshold))
        return out
