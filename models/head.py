"""A small classification head trained on frozen sentence embeddings, and the metrics we gate on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    weighted_f1: float

    def as_dict(self) -> dict[str, float]:
        return {"accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4),
                "weighted_f1": round(self.weighted_f1, 4)}


def per_class(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=n).astype(float)
    pred = np.bincount(y_pred, minlength=n).astype(float)
    support = np.bincount(y_true, minlength=n).astype(float)
    precision = np.divide(tp, pred, out=np.zeros(n), where=pred > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    return precision, recall, f1, support


def metrics(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> Metrics:
    _, _, f1, support = per_class(y_true, y_pred, n)
    present = support > 0
    return Metrics(
        accuracy=float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        weighted_f1=float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
    )


def build_head(dim: int, n_labels: int, hidden: int) -> torch.nn.Module:
    """Linear when ``hidden`` is 0, else one hidden layer: the artifact records which."""
    import torch

    if hidden <= 0:
        return torch.nn.Linear(dim, n_labels)
    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, n_labels)
    )


def class_weights(y_train: np.ndarray, n_labels: int) -> np.ndarray:
    """Inverse-frequency loss weights: they favour the rare classes' recall (macro-F1) over the data's own mix."""
    counts = np.bincount(y_train, minlength=n_labels).astype(np.float32)
    return counts.sum() / (n_labels * np.maximum(counts, 1))


def train_head(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_labels: int, *,
    hidden: int = 256, epochs: int = 60, lr: float = 2e-3, batch_size: int = 256, patience: int = 8, seed: int = 7,
) -> tuple[dict[str, object], Metrics]:
    """Class-weighted cross-entropy with early stopping on validation macro-F1; returns the best state dict.

    Always weighted, whatever ``--no-class-weights`` says for the other modes: unweighted, a head trained on 100
    sentiment texts predicted neutral for everything (docs/decisions/2026-12-07-top-layer-v1.md)."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = build_head(x_train.shape[1], n_labels, hidden)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(class_weights(y_train, n_labels)))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    xv = torch.from_numpy(x_val)
    best: tuple[float, dict[str, object], Metrics] | None = None
    stale = 0
    for _ in range(epochs):
        head.train()
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            loss_fn(head(xt[idx]), yt[idx]).backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            m = metrics(y_val, head(xv).argmax(1).numpy(), n_labels)
        if best is None or m.macro_f1 > best[0]:
            best = (m.macro_f1, {k: v.detach().clone() for k, v in head.state_dict().items()}, m)
            stale = 0
        else:
            stale += 1
            if stale >= patience:
                break
    if best is None:
        raise RuntimeError("no training epoch ran")
    return best[1], best[2]
