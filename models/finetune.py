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
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from models.encoder import length_buckets, load_encoder, mean_pool
from models.head import Metrics, build_head, class_weights, metrics
from models.top_layers import freeze_below, frozen_states, pad_ids, pad_states, top_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
Mode = Literal["head", "full", "lora", "top"]
# BERT-family module names LoRA adapts: attention projections and both feed-forward layers
LORA_TARGETS = ["query", "key", "value", "dense"]


@dataclass(frozen=True)
class FinetuneConfig:
    mode: Mode = "full"
    epochs: int = 5
    max_length: int = 96
    batch_size: int = 32
    lr: float = 5e-5  # encoder (full); LoRA adapters use lora_lr, mode top top_lr
    lora_lr: float = 5e-4
    top_lr: float = 3e-4  # mode top: the few trained layers take a larger step (measured: 3e-4 beat 1e-4)
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
    train_layers: int = 3  # mode top: transformer layers trained, counted from the output
    # Inverse-frequency loss weights favour the rare classes' recall (macro-F1); without them the loss follows
    # the data's own mix, which is what weighted-F1 scores (sentiment: +1.4 points test on 3 seeds, README).
    class_weights: bool = True


MODES = ("full", "lora", "top", "head")


def config_for(mode: str, lr: float | None = None, **fields: Any) -> FinetuneConfig:
    """The config a command line asks for: ``lr`` goes to whichever rate the mode trains with."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}, got '{mode}'")
    rate = {"full": "lr", "lora": "lora_lr", "top": "top_lr"}.get(mode)
    if lr and rate:
        fields[rate] = lr
    return FinetuneConfig(mode=mode, **fields)  # type: ignore[arg-type]


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


def buckets(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Shuffled batches of similar lengths: ``pool`` batches' worth at a time sorted by length, so little padding.

    Tweets are short and uneven (sentiment: median 25 tokens, p99 63); a random batch pads every row to
    its longest, which doubles CPU time; sorting within a pool keeps the batches random otherwise.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    step = batch_size * pool
    for start in range(0, len(order), step):
        chunk = order[start : start + step]
        out.extend([chunk[j] for j in b] for b in length_buckets([lengths[i] for i in chunk], batch_size))
    rng.shuffle(out)
    return out


def _batches(inputs: list[Any], labels: np.ndarray | None, batches: list[list[int]], pad_id: int, device: str) -> Any:
    """Dynamic padding per batch, of token ids or of cached hidden states (``models.top_layers``)."""
    import torch

    for idx in batches:
        rows = [inputs[i] for i in idx]
        x, mask = pad_states(rows) if isinstance(rows[0], torch.Tensor) else pad_ids(rows, pad_id)
        y = torch.from_numpy(labels[idx].astype(np.int64)).to(device) if labels is not None else None
        yield x.to(device), mask.to(device), y


def predict_logits(model: Any, inputs: list[Any], pad_id: int, device: str, batch_size: int = 128) -> np.ndarray:
    import torch

    batches = length_buckets([len(x) for x in inputs], batch_size)
    chunks: list[tuple[list[int], np.ndarray]] = []
    model.eval()
    with torch.inference_mode(), _autocast(device):
        for idx, (x, mask, _) in zip(batches, _batches(inputs, None, batches, pad_id, device), strict=True):
            chunks.append((idx, model(x, mask).float().cpu().numpy()))
    out = np.zeros((len(inputs), chunks[0][1].shape[1] if chunks else 0), dtype=np.float32)
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
    """Cross-entropy (class-weighted unless ``cfg.class_weights`` is off), linear warm-up/decay, early stopping
    on validation macro-F1."""
    device = pick_device(device)
    seed_everything(cfg.seed)
    t0 = time.monotonic()
    tokenizer, encoder = load_encoder(encoder_dir, device)
    encoder = encoder.float()  # fp32 master weights even from an fp16 checkpoint; bf16 autocast on GPU
    head = build_head(encoder.config.hidden_size, n_labels, cfg.hidden).to(device)

    def tok(texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
        return ids

    x_train: list[Any] = tok(train[0])
    x_val: list[Any] = tok(val[0])
    y_train, y_val = train[1], val[1]
    lengths = [len(x) for x in x_train]
    pad_id = tokenizer.pad_token_id or 0
    run = _trainable(encoder, head, x_train, x_val, pad_id, cfg, device, t0)
    optim = _optimiser(run, y_train, n_labels, cfg, device)
    best, epoch = _fit(run, optim, y_train, y_val, lengths, pad_id, n_labels, cfg, device, progress)
    encoder = run.encoder
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


@dataclass
class _Run:
    """What ``cfg.mode`` trains. ``finetune`` builds it after the head, then the optimiser: the head's and LoRA's
    initial weights come from the seeded generator, so another order would train another model."""

    encoder: Any  # LoRA: the PEFT wrapper until the best state is merged back
    head: Any
    model: Any  # what the loop calls: encoder + pooling + head, or mode top's cached-states model
    enc_params: list[Any]
    enc_lr: float
    x_train: list[Any]  # token ids, or mode top's cached hidden states
    x_val: list[Any]


class _Optimiser(NamedTuple):
    opt: Any
    sched: Any
    loss_fn: Any
    steps_per_epoch: int
    total: int


def _trainable(
    encoder: Any, head: Any, x_train: list[Any], x_val: list[Any], pad_id: int, cfg: FinetuneConfig, device: str,
    t0: float,
) -> _Run:
    """The parameters ``cfg.mode`` trains and the model the loop calls."""
    if cfg.mode == "lora":
        from peft import LoraConfig, get_peft_model

        encoder = get_peft_model(encoder, LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGETS,
        ))
        enc_params = [p for p in encoder.parameters() if p.requires_grad]
        enc_lr = cfg.lora_lr
        model = _pooled_model(encoder, head)
    elif cfg.mode == "full":
        enc_params, enc_lr = list(encoder.parameters()), cfg.lr
        model = _pooled_model(encoder, head)
    elif cfg.mode == "top":
        frozen = freeze_below(encoder, cfg.train_layers)
        enc_params, enc_lr = [p for p in encoder.parameters() if p.requires_grad], cfg.top_lr
        x_train = frozen_states(encoder, x_train, frozen, pad_id, device)
        x_val = frozen_states(encoder, x_val, frozen, pad_id, device)
        log.info("cached the %d frozen layers' output for %d texts in %.0fs", frozen, len(x_train) + len(x_val),
                 time.monotonic() - t0)
        model = top_model(encoder, head, frozen)
    else:
        raise ValueError(f"finetune() trains the encoder; mode '{cfg.mode}' is trained by models.head")
    return _Run(encoder, head, model, enc_params, enc_lr, x_train, x_val)


def _optimiser(run: _Run, y_train: np.ndarray, n_labels: int, cfg: FinetuneConfig, device: str) -> _Optimiser:
    """AdamW (encoder and head at their own rates), the loss, and linear warm-up then decay to 0."""
    import torch

    opt = torch.optim.AdamW([
        {"params": run.enc_params, "lr": run.enc_lr}, {"params": run.head.parameters(), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)
    weights = torch.from_numpy(class_weights(y_train, n_labels)).to(device) if cfg.class_weights else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    steps_per_epoch = math.ceil(len(run.x_train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    return _Optimiser(opt, sched, loss_fn, steps_per_epoch, total)


def _fit(
    run: _Run, optim: _Optimiser, y_train: np.ndarray, y_val: np.ndarray, lengths: list[int], pad_id: int,
    n_labels: int, cfg: FinetuneConfig, device: str, progress: bool,
) -> tuple[tuple[float, dict[str, Any], dict[str, Any], Metrics], int]:
    """The epochs, evaluated ``cfg.evals_per_epoch`` times each: the best (macro-F1, states, metrics) and the
    epoch the run stopped in."""
    import torch
    from tqdm import tqdm

    model, encoder, head, x_train, x_val = run.model, run.encoder, run.head, run.x_train, run.x_val
    opt, sched, loss_fn, steps_per_epoch, total = optim
    eval_every = max(1, steps_per_epoch // max(1, cfg.evals_per_epoch))
    rng = random.Random(cfg.seed)
    best: tuple[float, dict[str, Any], dict[str, Any], Metrics] | None = None
    stale, step, epoch = 0, 0, 0
    bar = tqdm(total=total, disable=not progress, desc=f"{cfg.mode} fine-tune", unit="step")
    stop = False
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for x, mask, y in _batches(x_train, y_train, buckets(lengths, cfg.batch_size, rng), pad_id, device):
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
    return best, epoch


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}
