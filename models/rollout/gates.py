"""Promote-or-roll-back decisions from live traffic and a served golden evaluation (pure).

The candidate is compared with production on the same stream: in a canary, on disjoint random
halves of the message ids (so class mixes differ only by sampling noise); in shadow mode, on the
very same messages (so agreement is measured directly).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tonewatch.core.service_sections import RolloutSettings


@dataclass
class LiveStats:
    """What the scored topic says about one model during a rollout."""

    production: Counter[str] = field(default_factory=Counter)  # label counts of production-scored messages
    candidate: Counter[str] = field(default_factory=Counter)  # of candidate-scored (canary) or shadow labels
    errors: int = 0  # messages the candidate failed on (production scored them instead)
    agreements: int = 0  # shadow: candidate label == production label
    compared: int = 0  # shadow: messages scored by both

    def add(self, record: Mapping[str, Any], model: str, label_field: str, production: int, candidate: int) -> None:
        """One scored record (as JSON); records of other versions (before the rollout) are ignored."""
        label = record.get(label_field)
        served = str(record.get("model_versions", {}).get(model, ""))
        extra = record.get("candidate", {}).get(model)
        if extra is not None and str(extra.get("version")) == str(candidate):
            if "error" in extra:
                self.errors += 1
            elif "label" in extra:  # shadow
                self.candidate[extra["label"]] += 1
                self.compared += 1
                self.agreements += int(extra["label"] == label)
        if label is None:
            return
        if served == str(candidate):
            self.candidate[label] += 1
        elif served == str(production):
            self.production[label] += 1

    @property
    def candidate_n(self) -> int:
        return sum(self.candidate.values())

    @property
    def error_rate(self) -> float:
        tried = self.candidate_n + self.errors
        return self.errors / tried if tried else 0.0


def class_shift(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Total-variation distance between two label distributions (0 = same mix, 1 = disjoint)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def shift_noise(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Expected total-variation distance of two samples of these sizes from ONE distribution.

    Added to the threshold so a 20-label model on a few dozen messages is not rolled back for noise:
    per label, |p_a - p_b| is about half-normal with sd sqrt(p(1-p)(1/na + 1/nb)).
    """
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    pooled = Counter(a) + Counter(b)
    n = na + nb
    return 0.5 * sum(math.sqrt(2 / math.pi * (c / n) * (1 - c / n) * (1 / na + 1 / nb)) for c in pooled.values())


@dataclass(frozen=True)
class Verdict:
    action: Literal["promote", "rollback", "wait"]
    reasons: tuple[str, ...]


def golden_gate(production_acc: float, candidate_acc: float, th: RolloutSettings) -> Verdict:
    if candidate_acc < production_acc - th.max_golden_drop:
        return Verdict("rollback", (f"golden accuracy {candidate_acc:.3f} vs production {production_acc:.3f} "
                                    f"(allowed drop {th.max_golden_drop})",))
    return Verdict("promote", (f"golden accuracy {candidate_acc:.3f} vs production {production_acc:.3f}",))


def decide(stats: LiveStats, mode: Literal["canary", "shadow"], th: RolloutSettings) -> Verdict:
    """Roll back on the first failed gate; promote only once enough candidate traffic passed all."""
    failed: list[str] = []
    if stats.errors and stats.error_rate > th.max_error_rate:
        failed.append(f"error rate {stats.error_rate:.3f} > {th.max_error_rate}")
    enough = stats.candidate_n >= th.min_samples and sum(stats.production.values()) >= th.min_samples
    shift, noise = class_shift(stats.candidate, stats.production), shift_noise(stats.candidate, stats.production)
    if enough and shift > th.max_class_shift + noise:
        failed.append(f"class-mix shift {shift:.3f} > {th.max_class_shift} + noise {noise:.3f}")
    agreement = stats.agreements / stats.compared if stats.compared else 1.0
    if mode == "shadow" and stats.compared >= th.min_samples and agreement < th.min_agreement:
        failed.append(f"agreement {agreement:.3f} < {th.min_agreement}")
    if failed:
        return Verdict("rollback", tuple(failed))
    if not enough:
        return Verdict("wait", (f"{stats.candidate_n} candidate / {sum(stats.production.values())} production "
                                f"samples, need {th.min_samples} each",))
    passed = [f"error rate {stats.error_rate:.3f}", f"class-mix shift {shift:.3f} (noise {noise:.3f})"]
    if mode == "shadow":
        passed.append(f"agreement {agreement:.3f}")
    return Verdict("promote", tuple(passed))


def collect(
    records: Iterable[Mapping[str, Any]], model: str, label_field: str, production: int, candidate: int
) -> LiveStats:
    stats = LiveStats()
    for r in records:
        stats.add(r, model, label_field, production, candidate)
    return stats
