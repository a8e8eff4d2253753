"""Top-layer fine-tuning: the cached lower layers change nothing the model computes, only what it costs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from models.encoder import encoder_path, load_encoder
from models.finetune import FinetuneConfig, _pooled_model, buckets, config_for, finetune, predict_logits
from models.head import build_head
from models.top_layers import freeze_below, frozen_states, top_model

TEXTS = ["$AAPL beats estimates, shares up 5%", "Fed holds rates", "a",
         "Tesla recalls two million cars over autopilot concerns, shares slide in pre-market trading"]


@pytest.fixture(scope="module")
def encoder() -> tuple[object, object]:
    tokenizer, model = load_encoder(encoder_path())
    return tokenizer, model.float()


@pytest.mark.parametrize("frozen", [0, 3, 5])
def test_top_layers_over_cached_states_give_the_whole_models_logits(encoder: tuple, frozen: int) -> None:
    tokenizer, model = encoder
    head = build_head(model.config.hidden_size, 3, 16).eval()
    ids = tokenizer(TEXTS, truncation=True, max_length=32)["input_ids"]
    whole = predict_logits(_pooled_model(model, head), ids, tokenizer.pad_token_id, "cpu")
    states = frozen_states(model, ids, frozen, tokenizer.pad_token_id, "cpu")
    assert [len(s) for s in states] == [len(i) for i in ids]  # unpadded, one per text, in input order
    top = predict_logits(top_model(model, head, frozen), states, tokenizer.pad_token_id, "cpu")
    np.testing.assert_allclose(top, whole, atol=1e-5)


def test_freeze_below_leaves_only_the_top_layers_trainable() -> None:
    _, fresh = load_encoder(encoder_path())
    assert freeze_below(fresh, 2) == 4
    trainable = {n.split(".")[2] for n, p in fresh.named_parameters() if p.requires_grad}
    assert trainable == {"4", "5"}
    for bad in (0, 7):
        with pytest.raises(ValueError, match="--train-layers must be 1-6"):
            freeze_below(fresh, bad)


def test_buckets_hold_every_row_once_in_similar_lengths_and_are_seeded() -> None:
    draw = random.Random(1)
    lengths = [draw.randint(1, 90) for _ in range(1000)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    batches = buckets(lengths, 32, rng_a, pool=4)
    assert batches == buckets(lengths, 32, rng_b, pool=4)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    # padding: sorted pools pad far less than random batches of the same size
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    shuffled = list(range(1000))
    random.Random(3).shuffle(shuffled)
    random_padded = sum(32 * max(lengths[i] for i in shuffled[j : j + 32]) for j in range(0, 1000, 32))
    assert padded < 0.75 * random_padded


def test_top_mode_trains_the_top_layers_and_keeps_the_rest_bit_for_bit(tmp_path: Path) -> None:
    texts = ["shares jump on strong earnings", "stock plunges after guidance cut", "company holds annual meeting"] * 8
    labels = np.array([2, 0, 1] * 8)
    cfg = FinetuneConfig(mode="top", train_layers=1, epochs=1, max_length=16, batch_size=8, lr=1e-3)
    result = finetune(encoder_path(), (texts, labels), (texts[:6], labels[:6]), 3, cfg, device="cpu", progress=False)
    _, base = load_encoder(encoder_path())
    changed = {n.split(".")[2] for n, p in result.encoder.named_parameters()
               if n.startswith("encoder.layer.") and not np.array_equal(p.detach().numpy(),
                                                                        base.get_parameter(n).detach().numpy())}
    assert changed == {"5"}
    assert np.array_equal(result.encoder.embeddings.word_embeddings.weight.detach().numpy(),
                          base.embeddings.word_embeddings.weight.detach().numpy())
    assert result.params == sum(p.numel() for p in base.parameters()) + sum(
        v.numel() for v in result.head_state.values())


def test_config_for_sends_lr_to_the_rate_the_mode_trains_with() -> None:
    base = FinetuneConfig()
    assert config_for("top", 1e-3, train_layers=2).top_lr == 1e-3
    assert config_for("top", None).top_lr == base.top_lr
    full = config_for("full", 2e-5, epochs=4)
    assert (full.lr, full.top_lr, full.lora_lr, full.epochs) == (2e-5, base.top_lr, base.lora_lr, 4)
    assert config_for("lora", 1e-3).lora_lr == 1e-3 and config_for("head", 1e-3) == FinetuneConfig(mode="head")
    with pytest.raises(ValueError, match="--mode must be one of full, lora, top, head, got 'fast'"):
        config_for("fast")


@pytest.mark.parametrize("class_weights", [True, False])
def test_class_weights_follow_the_config(monkeypatch: pytest.MonkeyPatch, class_weights: bool) -> None:
    """Weighted by inverse frequency, or plain: the sentiment v1 recipe turns them off for weighted-F1."""
    import torch

    seen: list[object] = []
    loss = torch.nn.CrossEntropyLoss

    def spy(weight: torch.Tensor | None = None) -> torch.nn.CrossEntropyLoss:
        seen.append(None if weight is None else weight.tolist())
        return loss(weight=weight)

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", spy)
    texts = ["shares jump on strong earnings"] * 6 + ["stock plunges after guidance cut", "company holds meeting"]
    labels = np.array([2] * 6 + [0, 1])
    cfg = FinetuneConfig(mode="top", train_layers=1, epochs=1, max_length=16, batch_size=8, class_weights=class_weights)
    finetune(encoder_path(), (texts, labels), (texts, labels), 3, cfg, device="cpu", progress=False)
    assert seen == [pytest.approx([8 / 3, 8 / 3, 8 / 18]) if class_weights else None]
