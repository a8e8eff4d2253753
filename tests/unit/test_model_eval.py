"""Evaluation and export bookkeeping of models/, without training or Triton."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import Manifest, model_card, next_version, version_numbers
from models.data import Split
from models.evaluate import EvalDataError, confusion_png, evaluate, format_report, read_labelled_csv
from models.labels import SENTIMENT


def _csv(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows), encoding="utf-8")
    return path


def test_labels_by_name_alias_or_index(tmp_path: Path) -> None:
    path = _csv(tmp_path, [("a", "Negative"), ("b", "bullish"), ("c", "Bearish"), ("d", "1")])
    split = read_labelled_csv(path, "text", "label", SENTIMENT)
    assert split.texts == ["a", "b", "c", "d"]
    assert split.labels == [0, 2, 0, 1]


def test_unknown_label_and_missing_column_are_clear_errors(tmp_path: Path) -> None:
    path = _csv(tmp_path, [("a", "negative"), ("b", "meh")])
    with pytest.raises(EvalDataError, match=r"d\.csv:3: label 'meh'"):
        read_labelled_csv(path, "text", "label", SENTIMENT)
    with pytest.raises(EvalDataError, match="no column 'sentence'"):
        read_labelled_csv(path, "sentence", "label", SENTIMENT)


def test_report_counts_per_class_and_confusion(tmp_path: Path) -> None:
    # predicts by first letter: n -> negative, p -> positive, else neutral
    def predict(texts: list[str]) -> np.ndarray:
        idx = [0 if t[0] == "n" else 2 if t[0] == "p" else 1 for t in texts]
        return np.eye(3, dtype=np.float32)[idx]

    split = Split(["n1", "n2", "p1", "x1", "p2"], [0, 0, 2, 1, 0])
    r = evaluate(predict, split, SENTIMENT, model="sentiment", version="1", data="toy")
    assert r.accuracy == 0.8
    assert r.confusion == [[2, 0, 1], [0, 1, 0], [0, 0, 1]]
    neg = r.per_class[0]
    assert (neg["precision"], neg["recall"], neg["support"]) == (1.0, round(2 / 3, 4), 3)
    assert "accuracy 0.8000" in format_report(r)
    png = confusion_png(r, tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_old_manifests_still_load_and_cards_tell_lineage(tmp_path: Path) -> None:
    old = {"name": "topic", "version": 1, "labels": ["a"], "encoder": {"kind": "package", "package": "p"},
           "max_length": 128, "hidden": 256, "metrics": {"test": {"accuracy": 0.5, "macro_f1": 0.4,
           "weighted_f1": 0.45}}, "created": "2026-11-01T00:00:00Z", "parent": None, "data": "d"}
    m = Manifest.from_dict(json.loads(json.dumps(old)))
    assert m.mode == "head" and m.params is None
    card = model_card(Manifest.from_dict({**old, "version": 3, "parent": 1, "mode": "full", "params": 22_812_547}))
    assert "# topic v3" in card and "parent version: 1" in card and "22,812,547 parameters" in card
    assert "| test | 0.5000 | 0.4000 | 0.4500 |" in card


def test_versions_are_numbered_after_the_highest(tmp_path: Path) -> None:
    assert next_version(tmp_path, "sentiment") == 1
    for v in ("1", "3", ".tmp-4", "notes"):
        (tmp_path / "sentiment" / v).mkdir(parents=True)
    assert version_numbers(tmp_path, "sentiment") == [1, 3]
    assert next_version(tmp_path, "sentiment") == 4
