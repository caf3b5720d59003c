"""Next-byte cross-entropy with per-sample reduction (the extractor's loss contract)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

ModelLike = nn.Module | Callable[[Tensor], Tensor]


def lm_loss(model: ModelLike, batch: Tensor) -> Tensor:
    """Per-sample next-byte loss in nats per byte.

    Args:
        model: a module (or any callable) mapping LongTensor (B, T) -> logits (B, T, V),
            e.g. :class:`~direct_opt.lm.model.TinyGPT` or
            ``lambda x: torch.func.functional_call(model, params, (x,))``.
        batch: integer tensor (B, T+1) of byte values; inputs are ``batch[:, :-1]``,
            targets ``batch[:, 1:]``.

    Returns:
        Float tensor (B,): cross-entropy averaged over the T positions of each sample.
        This is the ``loss_fn(model, batch) -> (B,)`` contract of the gradient
        extractor; it is vmap-safe (no in-place ops, no data-dependent control flow).
    """
    if batch.dim() != 2 or batch.shape[1] < 2:
        raise ValueError(
            f"batch must have shape (B, T+1) with T >= 1, got {tuple(batch.shape)}; "
            "for a single sample use batch[None]."
        )
    batch = batch.long()
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)  # (B, T, V)
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="none")
    return nll.reshape(B, T).mean(dim=1)
