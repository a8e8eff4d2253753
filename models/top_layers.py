"""Fine-tuning only the encoder's top layers, over the frozen layers' outputs computed once.

The frozen layers' output per text never changes, so it is computed once and every epoch runs only the
top ``k`` layers; the saved encoder is an ordinary one (docs/decisions/2026-12-07-top-layer-v1.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.encoder import length_buckets, mean_pool

if TYPE_CHECKING:
    import torch


def freeze_below(encoder: Any, train_layers: int) -> int:
    """Freeze all but the top ``train_layers`` transformer layers; returns how many layers are frozen."""
    layers = encoder.encoder.layer
    if not 1 <= train_layers <= len(layers):
        raise ValueError(f"--train-layers must be 1-{len(layers)} for this encoder, got {train_layers}")
    frozen = len(layers) - train_layers
    for p in encoder.parameters():
        p.requires_grad_(False)
    for layer in layers[frozen:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return frozen


def _mask4d(encoder: Any, hidden: torch.Tensor, mask: torch.Tensor) -> Any:
    """The attention mask exactly as the encoder builds it for its layers (eager or SDPA)."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask)


def frozen_states(
    encoder: Any, ids: list[list[int]], frozen: int, pad_id: int, device: str, batch_size: int = 64
) -> list[torch.Tensor]:
    """Each text's hidden states after the ``frozen`` lower layers, unpadded, on the CPU."""
    import torch

    layers = encoder.encoder.layer
    out: list[torch.Tensor | None] = [None] * len(ids)
    encoder.eval()
    with torch.inference_mode():
        for idx in length_buckets([len(i) for i in ids], batch_size):
            x, mask = pad_ids([ids[i] for i in idx], pad_id)
            x, mask = x.to(device), mask.to(device)
            hidden = encoder.embeddings(input_ids=x)
            m4 = _mask4d(encoder, hidden, mask)
            for layer in layers[:frozen]:
                hidden = layer(hidden, m4)
            hidden = hidden.float().cpu()
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(ids[i])].clone()
    return [t for t in out if t is not None]


def pad_ids(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, r in enumerate(rows):
        x[row, : len(r)] = torch.tensor(r)
        mask[row, : len(r)] = 1
    return x, mask


def pad_states(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    x = torch.zeros((len(rows), width, rows[0].shape[1]), dtype=rows[0].dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, r in enumerate(rows):
        x[row, : len(r)] = r
        mask[row, : len(r)] = 1
    return x, mask


def top_model(encoder: Any, head: Any, frozen: int) -> Any:
    """Top layers + pooling + head, fed the frozen layers' cached output: same function as the whole model."""
    import torch

    class Top(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(encoder.encoder.layer[frozen:])
            self.head = head

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m4 = _mask4d(encoder, hidden, mask)
            for layer in self.layers:
                hidden = layer(hidden, m4)
            return self.head(mean_pool(hidden, mask))

    return Top()
