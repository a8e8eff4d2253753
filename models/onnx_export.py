"""CPU inference through ONNX Runtime: one fused graph per version (encoder, pooling, head, softmax).

Exported beside the torch weights when a version is written. int8 (dynamic, per-channel) is adopted only
when it agrees with fp32 on the validation split at least ``INT8_MIN_AGREEMENT`` of the time and loses at
most ``INT8_MAX_F1_DROP`` weighted-F1 against the validation labels: agreement alone would pass a model that
predicts one class in both precisions (docs/decisions/2026-12-07-onnx-cpu-serving.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import artifact_dir, weights_digest
from models.head import metrics
from models.onnx_runtime import FP32_FILE, INT8_FILE, run, session

log = logging.getLogger(__name__)
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_F1_DROP = 0.005
OPSET = 17


def _fused(encoder: Any, head: Any) -> Any:
    import torch

    from models.encoder import mean_pool

    class Fused(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.softmax(self.head(mean_pool(hidden, attention_mask)), dim=-1)

    return Fused().eval()


def _batched(predict: Callable[[list[str]], np.ndarray], texts: list[str], batch: int = 64) -> np.ndarray:
    return np.concatenate([predict(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def int8_gate(fp32: np.ndarray, int8: np.ndarray, labels: list[int] | None) -> tuple[bool, dict[str, float]]:
    """Whether int8 may replace fp32, and the figures the decision rests on (for the manifest)."""
    agreement = float((int8.argmax(1) == fp32.argmax(1)).mean()) if len(fp32) else 0.0
    figures = {"int8_agreement": round(agreement, 4)}
    ok = agreement >= INT8_MIN_AGREEMENT
    if labels is not None:
        y, n = np.asarray(labels), fp32.shape[1]
        f1_fp32 = metrics(y, fp32.argmax(1), n).weighted_f1
        f1_int8 = metrics(y, int8.argmax(1), n).weighted_f1
        figures |= {"fp32_weighted_f1": round(f1_fp32, 4), "int8_weighted_f1": round(f1_int8, 4)}
        ok = ok and f1_int8 >= f1_fp32 - INT8_MAX_F1_DROP
    return ok, figures


def export_onnx(version_dir: Path, check_texts: list[str], *, check_labels: list[int] | None = None,
                threads: int | None = None) -> dict[str, Any]:
    """Write the fused graph(s) into the version's artifact; returns the manifest's ``runtime`` entry.

    The fp32 graph must reproduce torch's probabilities (max abs difference recorded); int8 must also pass
    :func:`int8_gate` on ``check_texts`` (the validation split, labelled by ``check_labels``) or it is deleted.
    """
    import torch

    from models.serving import TorchModel

    torch_model = TorchModel(version_dir, "cpu", threads)
    art = artifact_dir(version_dir)
    sample = torch_model.tokenizer(["a headline", "a somewhat longer chat message about $AAPL"], padding=True,
                                   return_tensors="pt")
    t0 = time.monotonic()
    torch.onnx.export(
        _fused(torch_model.encoder, torch_model.head), (sample["input_ids"], sample["attention_mask"]),
        str(art / FP32_FILE), input_names=["input_ids", "attention_mask"], output_names=["probs"],
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                      "probs": {0: "batch"}},
        opset_version=OPSET, dynamo=False,
    )
    texts = check_texts or ["a headline"]
    max_length = torch_model.max_length
    reference = _batched(torch_model.predict_proba, texts)
    fp32_session = session(art / FP32_FILE, threads)
    fp32 = _batched(lambda b: run(fp32_session, torch_model.tokenizer, b, max_length), texts)
    max_diff = float(np.abs(fp32 - reference).max())
    if max_diff > 1e-3:
        (art / FP32_FILE).unlink()
        raise RuntimeError(f"ONNX export of {version_dir} differs from torch by {max_diff:.2e}")
    entry: dict[str, Any] = {"file": FP32_FILE, "max_abs_diff_vs_torch": round(max_diff, 8), "checked_on": len(texts),
                             "weights_sha256": weights_digest(version_dir, torch_model.manifest.encoder)}

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(art / FP32_FILE), str(art / INT8_FILE), weight_type=QuantType.QInt8, per_channel=True)
    int8_session = session(art / INT8_FILE, threads)
    int8 = _batched(lambda b: run(int8_session, torch_model.tokenizer, b, max_length), texts)
    adopted, figures = int8_gate(fp32, int8, check_labels)
    entry |= figures
    if adopted:
        entry["file"] = INT8_FILE
    else:
        (art / INT8_FILE).unlink()
    for name in (FP32_FILE, INT8_FILE):
        if (art / name).exists():
            (art / name).chmod(0o644)
    log.info("%s: ONNX %s (int8 %s, fp32 max diff %.1e) in %.0fs", version_dir, entry["file"], figures, max_diff,
             time.monotonic() - t0)
    return entry
