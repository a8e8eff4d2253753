"""Fine-tuning the encoder with its head: full, or LoRA merged back, so serving sees one plain model.

Pooling is the encoder's own (mean over tokens, L2-normalised), so a fine-tuned version is served by the
same :class:`models.serving.Classifier` as a head-only one, from the encoder saved inside its artifact.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from models.encoder import load_encoder, mean_pool
from models.head import Metrics, build_head, metrics

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
Mode = Literal["head", "full", "lora"]
# BERT-family module names LoRA adapts: attention projections and both feed-forward layers
LORA_TARGETS = ["query", "key", "value", "dense"]


@dataclass(frozen=True)
class FinetuneConfig:
    mode: Mode = "full"
    epochs: int = 5
    max_length: int = 96
    batch_size: int = 32
    lr: float = 5e-5  # encoder (full); LoRA adapters use lora_lr
    lora_lr: float = 5e-4
    head_lr: float = 1e-3
    hidden: int = 256
    warmup: float = 0.06
    weight_decay: float = 0.01
    patience: int = 2
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    seed: int = 7
    evals_per_epoch: int = 1


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def pick_device(device: str | None = None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _pooled_model(encoder: Any, head: Any) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.head(mean_pool(hidden, attention_mask))

    return Pooled()


def _batches(
    ids: list[list[int]], labels: np.ndarray | None, batch_size: int, pad_id: int, order: list[int], device: str
) -> Any:
    """Dynamic padding per batch: tweets are short, so padding to max_length would waste most compute."""
    import torch

    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        x = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            x[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        y = torch.from_numpy(labels[idx].astype(np.int64)).to(device) if labels is not None else None
        yield x.to(device), mask.to(device), y


def predict_logits(model: Any, ids: list[list[int]], pad_id: int, device: str, batch_size: int = 128) -> np.ndarray:
    import torch

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks: list[tuple[list[int], np.ndarray]] = []
    model.eval()
    with torch.inference_mode(), _autocast(device):
        for n, (x, mask, _) in enumerate(_batches(ids, None, batch_size, pad_id, order, device)):
            chunks.append((order[n * batch_size : (n + 1) * batch_size], model(x, mask).float().cpu().numpy()))
    out = np.zeros((len(ids), chunks[0][1].shape[1] if chunks else 0), dtype=np.float32)
    for idx, logits in chunks:
        out[idx] = logits
    return out


def _autocast(device: str) -> Any:
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class FinetuneResult:
    encoder: Any  # a plain transformers model (LoRA merged), ready for save_pretrained
    tokenizer: Any
    head_state: dict[str, Any]
    val: Metrics
    epochs_run: int
    seconds: float
    device: str
    params: int


def finetune(
    encoder_dir: Path, train: tuple[list[str], np.ndarray], val: tuple[list[str], np.ndarray], n_labels: int,
    cfg: FinetuneConfig, device: str | None = None, progress: bool = True,
) -> FinetuneResult:
    """Class-weighted cross-entropy, linear warm-up/decay, early stopping on validation macro-F1."""
    import torch
    from tqdm import tqdm

    device = pick_device(device)
    seed_everything(cfg.seed)
    t0 = time.monotonic()
    tokenizer, encoder = load_encoder(encoder_dir, device)
    encoder = encoder.float()  # fp32 master weights even from an fp16 checkpoint; bf16 autocast on GPU
    head = build_head(encoder.config.hidden_size, n_labels, cfg.hidden).to(device)
    if cfg.mode == "lora":
        from peft import LoraConfig, get_peft_model

        encoder = get_peft_model(encoder, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGETS,
        ))
        enc_params = [p for p in encoder.parameters() if p.requires_grad]
        enc_lr = cfg.lora_lr
    elif cfg.mode == "full":
        enc_params, enc_lr = list(encoder.parameters()), cfg.lr
    else:
        raise ValueError(f"finetune() trains the encoder; mode '{cfg.mode}' is trained by models.head")
    model = _pooled_model(encoder, head)
    opt = torch.optim.AdamW([
        {"params": enc_params, "lr": enc_lr}, {"params": head.parameters(), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)

    def tok(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]

    x_train, y_train = tok(train[0]), train[1]
    x_val, y_val = tok(val[0]), val[1]
    pad_id = tokenizer.pad_token_id or 0
    counts = np.bincount(y_train, minlength=n_labels).astype(np.float32)
    weights = torch.tensor(counts.sum() / (n_labels * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))
    rng = random.Random(cfg.seed)
    best: tuple[float, dict[str, Any], dict[str, Any], Metrics] | None = None
    stale, step, epoch = 0, 0, 0
    bar = tqdm(total=total, disable=not progress, desc=f"{cfg.mode} fine-tune", unit="step")
    stop = False
    for epoch in range(1, cfg.epochs + 1):
        order = list(range(len(x_train)))
        rng.shuffle(order)
        model.train()
        for x, mask, y in _batches(x_train, y_train, cfg.batch_size, pad_id, order, device):
            with _autocast(device):
                loss = loss_fn(model(x, mask).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if step % eval_every == 0 or step == total:
                m = metrics(y_val, predict_logits(model, x_val, pad_id, device).argmax(1), n_labels)
                log.info("epoch %d step %d: val %s", epoch, step, m.as_dict())
                if best is None or m.macro_f1 > best[0]:
                    best = (m.macro_f1, _cpu_state(encoder), _cpu_state(head), m)
                    stale = 0
                else:
                    stale += 1
                    if stale >= cfg.patience * cfg.evals_per_epoch:
                        stop = True
                        break
                model.train()
        if stop:
            break
    bar.close()
    if best is None:
        raise RuntimeError("no training step ran: is the training set empty?")
    encoder.load_state_dict(best[1])
    head.load_state_dict(best[2])
    if cfg.mode == "lora":
        encoder = encoder.merge_and_unload()
    encoder = encoder.float().cpu().eval()
    params = sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in head.parameters())
    return FinetuneResult(
        encoder=encoder, tokenizer=tokenizer, head_state=_cpu_state(head), val=best[3], epochs_run=epoch,
        seconds=time.monotonic() - t0, device=device, params=params,
    )


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}
