"""Inference for one model version: what Triton's model.py calls, testable without Triton."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import HEAD_FILE, artifact_dir, validate_artifact
from models.encoder import encode, encoder_path, load_encoder
from models.head import build_head


def _encoder_location(version_dir: Path, spec: dict[str, str]) -> Path:
    if spec.get("kind") == "package":
        return encoder_path(spec["package"])
    if spec.get("kind") == "local":
        return artifact_dir(version_dir) / spec["path"]
    raise ValueError(f"unknown encoder spec {spec}")


class Classifier:
    """Encoder + head on one device; one forward pass per call, so the caller decides the batch."""

    def __init__(self, version_dir: Path, device: str = "cpu", threads: int | None = None) -> None:
        import torch
        from safetensors.torch import load_file

        if threads:
            torch.set_num_threads(threads)
        self.manifest = validate_artifact(version_dir)
        self.labels = self.manifest.labels
        self.device = device
        self.tokenizer, self.encoder = load_encoder(_encoder_location(version_dir, self.manifest.encoder), device)
        state = load_file(str(artifact_dir(version_dir) / HEAD_FILE))
        self.head: Any = build_head(self.encoder.config.hidden_size, len(self.labels), self.manifest.hidden)
        self.head.load_state_dict(state)
        self.head.to(device).eval()
        if device.startswith("cuda"):  # fp16 halves memory traffic on GPU; CPU stays fp32
            self.encoder.half()
            self.head.half()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        emb = encode(self.tokenizer, self.encoder, texts, self.manifest.max_length, self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.head(emb).float(), dim=-1)
        return probs.cpu().numpy().astype(np.float32)
