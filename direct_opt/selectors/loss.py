"""Loss selectors: ``loss`` (highest loss) and ``excess-loss`` (BLADE / RHO-LOSS style).

Both evaluate ``loss_fn(model, batch) -> (B,)`` over the pool in batches under
``torch.no_grad()`` with the model(s) in eval mode (training flags restored afterwards).
torch is imported lazily: the gradient selectors do not need it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError
from .base import Pick, SelectorInputs, register_selector, score_summary, top_k

DEFAULT_BATCH_SIZE = 64


def pool_losses(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    pool: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> np.ndarray:
    """(N,) float64 per-sample losses of ``model`` on ``pool``.

    Args:
        model: torch.nn.Module (run in eval mode under no_grad; its mode is restored).
        loss_fn: ``loss_fn(model, batch) -> (B,)``.
        pool: a tensor (N, ...) (batches are slices ``pool[s:e]``) or a sequence of N
            samples (batches are ``collate_fn([pool[i] for i in range(s, e)])``, default
            ``torch.utils.data.default_collate``).
        batch_size: samples per batch.
        collate_fn: see ``pool``.
    Raises:
        InvalidInputError if loss_fn returns the wrong shape; NonFiniteError on NaN/Inf.
    """
    import torch
    from torch.utils._pytree import tree_map
    from torch.utils.data import default_collate

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise InvalidParameterError(f"batch_size={batch_size!r} must be a positive integer.")
    n = int(pool.shape[0]) if isinstance(pool, torch.Tensor) else len(pool)
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    collate = collate_fn or default_collate
    was_training = bool(getattr(model, "training", False))
    out = np.empty(n, np.float64)
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, n, int(batch_size)):
                e = min(n, s + int(batch_size))
                batch = pool[s:e] if isinstance(pool, torch.Tensor) else collate([pool[i] for i in range(s, e)])
                batch = tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, batch)
                loss = loss_fn(model, batch)
                if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (e - s,):
                    shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                    raise InvalidInputError(
                        f"loss_fn must return per-sample losses of shape (B,) = ({e - s},); got {shape}."
                    )
                out[s:e] = loss.detach().double().cpu().numpy()
    finally:
        model.train(was_training)
    if not np.isfinite(out).all():
        i = int(np.flatnonzero(~np.isfinite(out))[0])
        raise NonFiniteError(f"loss of pool sample {i} is {out[i]}; fix or drop it before selecting.")
    return out


@register_selector("loss")
def loss_selector(
    inp: SelectorInputs, *, batch_size: int = DEFAULT_BATCH_SIZE, collate_fn: Callable | None = None
) -> Pick:
    """Top-K per-sample loss: ``stats.losses`` if present, else computed from model + loss_fn + pool."""
    if inp.has("model", "loss_fn", "pool"):
        scores = pool_losses(inp.model, inp.loss_fn, inp.pool, batch_size, collate_fn)
        source = "model"
    elif inp.stats is not None and inp.stats.losses is not None:
        scores = np.asarray(inp.stats.losses, np.float64)
        source = "stats.losses"
    else:
        raise inp.missing_error("stats with losses, or model, loss_fn and pool")
    idx = top_k(scores, inp.k, "losses")
    return Pick(idx, {"score": "loss(x; theta)", "source": source, **score_summary(scores, idx)}, scores)


@register_selector("excess-loss", needs_stats=False)
def excess_loss_selector(
    inp: SelectorInputs, *, batch_size: int = DEFAULT_BATCH_SIZE, collate_fn: Callable | None = None
) -> Pick:
    """BLADE-style excess loss: top-K of ℓ(x; θ) − ℓ(x; θ_ref).

    ``reference`` is the dynamic reference model θ_ref (e.g. the EMA of the weights kept
    during the stable phase). Ties (e.g. reference == model: all zeros) go to the lower index.
    """
    if not inp.has("model", "loss_fn", "pool", "reference"):
        raise inp.missing_error("model, loss_fn, pool and reference")
    cur = pool_losses(inp.model, inp.loss_fn, inp.pool, batch_size, collate_fn)
    ref = pool_losses(inp.reference, inp.loss_fn, inp.pool, batch_size, collate_fn)
    scores = cur - ref
    idx = top_k(scores, inp.k, "excess loss")
    diag = {
        "score": "loss(x; theta) - loss(x; theta_ref)",
        "mean_loss": float(cur.mean()), "mean_reference_loss": float(ref.mean()),
        "n_ties_at_threshold": int((scores == scores[idx].min()).sum()),
        **score_summary(scores, idx),
    }
    return Pick(idx, diag, scores)
