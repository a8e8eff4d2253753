"""ONNX Runtime inference of a version's fused graph, in length-sorted sub-batches (CPU serving)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.encoder import length_buckets

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


def session(path: Path, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


SUB_BATCH = 16  # texts per forward pass on CPU: sorted by length, so each pass pads little


def run(sess: Any, tokenizer: Any, texts: list[str], max_length: int, sub_batch: int = SUB_BATCH) -> np.ndarray:
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(x) for x in ids]
    out: np.ndarray | None = None
    for bucket in length_buckets(lengths, sub_batch):
        width = max(lengths[i] for i in bucket)
        input_ids = np.full((len(bucket), width), tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(bucket), width), dtype=np.int64)
        for row, i in enumerate(bucket):
            input_ids[row, : lengths[i]] = ids[i]
            mask[row, : lengths[i]] = 1
        probs = sess.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        if out is None:
            out = np.empty((len(texts), probs.shape[1]), dtype=np.float32)
        out[bucket] = probs
    if out is None:
        raise ValueError("run() needs at least one text")
    return out
