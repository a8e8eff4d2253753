"""Promotion gates (pure): live stats from scored records, class-mix shift with its noise, verdicts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from models.rollout.gates import LiveStats, class_shift, collect, decide, golden_gate, shift_noise
from tonewatch.core.service_sections import RolloutSettings

TH = RolloutSettings(min_samples=20, max_error_rate=0.01, min_agreement=0.8, max_class_shift=0.25, max_golden_drop=0.05)


def rec(label: str, version: str, candidate: dict[str, str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"sentiment": label, "model_versions": {"sentiment": version, "topic": "1"}}
    if candidate is not None:
        r["candidate"] = {"sentiment": candidate}
    return r


def test_class_shift_is_total_variation_and_noise_shrinks_with_samples() -> None:
    assert class_shift({"a": 5, "b": 5}, {"a": 50, "b": 50}) == 0.0
    assert class_shift({"a": 10}, {"b": 3}) == 1.0
    assert abs(class_shift({"a": 3, "b": 1}, {"a": 1, "b": 1}) - 0.25) < 1e-9
    small = shift_noise(Counter(a=10, b=10), Counter(a=10, b=10))
    large = shift_noise(Counter(a=1000, b=1000), Counter(a=1000, b=1000))
    assert small > large > 0 and shift_noise({}, {"a": 1}) == 0.0


def test_canary_with_the_same_mix_is_promoted_once_enough_traffic_passed() -> None:
    records = [rec(lab, v) for v in ("1", "2") for lab in ["negative"] * 8 + ["neutral"] * 12 + ["positive"] * 10]
    stats = collect(records[:10], "sentiment", "sentiment", 1, 2)
    assert decide(stats, "canary", TH).action == "wait"
    stats = collect([*records, rec("neutral", "0")], "sentiment", "sentiment", 1, 2)  # other versions ignored
    assert (stats.candidate_n, sum(stats.production.values())) == (30, 30)
    assert decide(stats, "canary", TH).action == "promote"


def test_a_candidate_that_shifts_the_class_mix_is_rolled_back() -> None:
    prod = [rec(lab, "1") for lab in ["negative"] * 10 + ["neutral"] * 15 + ["positive"] * 15]
    cand = [rec("negative", "2") for _ in range(40)]
    verdict = decide(collect(prod + cand, "sentiment", "sentiment", 1, 2), "canary", TH)
    assert verdict.action == "rollback" and "class-mix shift" in verdict.reasons[0]


def test_candidate_failures_roll_back_before_enough_samples() -> None:
    records = [rec("neutral", "1", {"version": "2", "error": "boom"}), *[rec("neutral", "2") for _ in range(5)]]
    stats = collect(records, "sentiment", "sentiment", 1, 2)
    assert stats.errors == 1 and abs(stats.error_rate - 1 / 6) < 1e-9
    verdict = decide(stats, "canary", TH)
    assert verdict.action == "rollback" and "error rate" in verdict.reasons[0]


def test_shadow_agreement_gate() -> None:
    agree = [rec("neutral", "1", {"version": "2", "label": "neutral"}) for _ in range(25)]
    stats = collect(agree, "sentiment", "sentiment", 1, 2)
    assert (stats.compared, stats.agreements) == (25, 25)
    assert decide(stats, "shadow", TH).action == "promote"
    flip = [rec("positive", "1", {"version": "2", "label": "negative"}) for _ in range(25)]
    mixed = collect(agree + flip, "sentiment", "sentiment", 1, 2)
    verdict = decide(mixed, "shadow", TH)
    assert verdict.action == "rollback" and any("agreement 0.500" in r for r in verdict.reasons)


def test_golden_gate_allows_a_small_drop_only() -> None:
    assert golden_gate(0.80, 0.77, TH).action == "promote"
    assert golden_gate(0.80, 0.70, TH).action == "rollback"


def test_live_stats_start_empty() -> None:
    s = LiveStats()
    assert s.error_rate == 0.0 and s.candidate_n == 0 and decide(s, "canary", TH).action == "wait"
