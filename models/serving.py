"""Inference for one model version: what Triton's model.py calls, testable without Triton.

On CPU a version with an ONNX graph (models/onnx_export.py) runs in ONNX Runtime in length-sorted
sub-batches; on GPU, or with ``runtime="torch"``, the torch weights run (fp16 on GPU), where whole batches
keep the GPU busy (docs/decisions/2026-12-07-onnx-cpu-serving.md; speeds in docs/models.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.artifact import HEAD_FILE, Manifest, artifact_dir, inside, temperature, validate_artifact
from models.calibration import apply_temperature
from models.encoder import encode, encoder_path, load_encoder
from models.head import build_head
from models.onnx_runtime import run, session

Runtime = Literal["auto", "torch", "onnx"]


def _encoder_location(version_dir: Path, spec: dict[str, str]) -> Path:
    if spec.get("kind") == "package":
        return encoder_path(spec["package"])
    if spec.get("kind") == "local":
        return inside(version_dir, spec["path"], "the encoder folder")
    raise ValueError(f"unknown encoder spec {spec}")


class TorchModel:
    """Encoder + head on one device; one forward pass per call, so the caller decides the batch."""

    def __init__(self, version_dir: Path, device: str = "cpu", threads: int | None = None,
                 manifest: Manifest | None = None) -> None:
        import torch
        from safetensors.torch import load_file

        if threads:
            torch.set_num_threads(threads)
        self.manifest = manifest or validate_artifact(version_dir)
        self.max_length = self.manifest.max_length
        self.device = device
        self.tokenizer, self.encoder = load_encoder(_encoder_location(version_dir, self.manifest.encoder), device)
        state = load_file(str(artifact_dir(version_dir) / HEAD_FILE))
        self.head: Any = build_head(self.encoder.config.hidden_size, len(self.manifest.labels), self.manifest.hidden)
        self.head.load_state_dict(state)
        self.head.to(device).eval()
        if device.startswith("cuda"):  # fp16 halves memory traffic on GPU; CPU stays fp32
            self.encoder.half()
            self.head.half()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        emb = encode(self.tokenizer, self.encoder, texts, self.max_length, self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.head(emb).float(), dim=-1)
        return probs.cpu().numpy().astype(np.float32)


class OnnxModel:
    """The version's fused ONNX graph in ONNX Runtime (CPU); only the tokenizer comes from transformers."""

    def __init__(self, version_dir: Path, manifest: Manifest, threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        assert manifest.runtime is not None
        self.max_length = manifest.max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(_encoder_location(version_dir, manifest.encoder)))
        self.session = session(inside(version_dir, manifest.runtime["file"], "the ONNX graph"), threads)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return run(self.session, self.tokenizer, texts, self.max_length)


class Classifier:
    """One version as served: ONNX Runtime on CPU when the version has a graph, else torch; probabilities
    rescaled by the manifest's temperature when it has one (``calibrated=False``: the raw ones, to fit it)."""

    def __init__(self, version_dir: Path, device: str = "cpu", threads: int | None = None,
                 runtime: Runtime = "auto", calibrated: bool = True) -> None:
        self.manifest = validate_artifact(version_dir)
        self.labels = self.manifest.labels
        self.temperature = temperature(self.manifest) if calibrated else None
        self.device = device
        has_graph = bool(self.manifest.runtime and self.manifest.runtime.get("file"))
        if runtime == "onnx" and not has_graph:
            raise ValueError(f"{version_dir}: no ONNX graph in the artifact")
        self.runtime = "onnx" if runtime == "onnx" or (runtime == "auto" and has_graph and device == "cpu") else "torch"
        self.model: TorchModel | OnnxModel = (
            OnnxModel(version_dir, self.manifest, threads) if self.runtime == "onnx"
            else TorchModel(version_dir, device, threads, self.manifest)
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        probs = self.model.predict_proba(texts)
        return probs if self.temperature is None else apply_temperature(probs, self.temperature)
