"""A fine-tuned version, exported by ``models train``, served by real Triton exactly as evaluated offline."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ArtifactError, read_manifest, validate_artifact
from models.evaluate import local_predictor, triton_predictor
from models.finetune import FinetuneConfig
from models.serving import Classifier
from models.train import train_version
from models.triton_admin import load_model
from tonewatch.core.settings import Settings
from tonewatch.stack.triton import start_triton, stop_triton

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TEXTS = ["$TSLA plunges after recall", "Fed holds rates steady", "Apple beats estimates, shares jump", ""]


def test_fine_tuned_version_is_served_as_evaluated(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sentiment").mkdir(parents=True)
    shutil.copyfile(REPO / "triton_repo" / "sentiment" / "config.pbtxt", repo / "sentiment" / "config.pbtxt")
    settings = Settings().updated(run_dir=tmp_path / "run", triton__model_repository=repo,
                                  triton__model_env_path=Path(sys.prefix),
                        triton__cpu_threads=1)
    # a tiny LoRA run: the point is the export path (merged encoder inside the version), not accuracy
    path = train_version(settings, "sentiment", FinetuneConfig(mode="lora", epochs=1, max_length=32), limit=48,
                         progress=False)
    manifest = read_manifest(path)
    assert (path.name, manifest.mode, manifest.parent) == ("1", "lora", None)
    assert manifest.encoder["kind"] == "local" and (path / "artifact" / "encoder" / "model.safetensors").is_file()
    assert manifest.params is not None and manifest.params <= 25_000_000
    assert set(manifest.metrics["test"]) == {"accuracy", "macro_f1", "weighted_f1"}
    assert (path / "model.py").read_bytes() == (REPO / "models" / "triton_model.py").read_bytes()
    # CPU serving runs the fused ONNX graph; fp32 gives torch's probabilities, int8 only passed its gate
    assert manifest.runtime is not None and (path / "artifact" / manifest.runtime["file"]).is_file()
    assert Classifier(path).runtime == "onnx"
    int8 = manifest.runtime["file"] != "model.onnx"
    assert manifest.runtime["int8_agreement"] >= 0.99 if int8 else manifest.runtime["max_abs_diff_vs_torch"] < 1e-4
    np.testing.assert_allclose(Classifier(path).predict_proba(TEXTS),
                               Classifier(path, runtime="torch").predict_proba(TEXTS), atol=0.05 if int8 else 1e-4)

    triton = start_triton(settings, tmp_path / "triton")
    try:
        local = settings.updated(triton__http_url=triton.http_url, triton__grpc_url=triton.grpc_url)
        load_model(local, "sentiment", timeout_s=180)
        served = triton_predictor(triton.grpc_url, "sentiment", "1")(TEXTS)
        offline = local_predictor(path)(TEXTS)
        assert served.shape == (len(TEXTS), 3)
        np.testing.assert_allclose(served.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(served, offline, atol=1e-4)
    finally:
        stop_triton(triton)


def test_a_version_without_its_encoder_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    settings = Settings().updated(run_dir=tmp_path / "run", triton__model_repository=repo)
    path = train_version(settings, "topic", FinetuneConfig(mode="full", epochs=1, max_length=24), limit=40,
                         progress=False)
    validate_artifact(path)
    graph = path / "artifact" / read_manifest(path).runtime["file"]  # type: ignore[index]
    graph.rename(graph.with_suffix(".moved"))
    with pytest.raises(ArtifactError, match=r"ONNX graph .* which is missing"):
        validate_artifact(path)
    graph.with_suffix(".moved").rename(graph)
    (path / "artifact" / "encoder" / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"fine-tuned encoder lacks model\.safetensors"):
        validate_artifact(path)
