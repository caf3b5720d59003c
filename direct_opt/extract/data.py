"""The data contract: samples, batches, and the per-sample loss adapters.

Contract: ``loss_fn(model, batch) -> Tensor (B,)`` of per-sample losses, where
``batch = collate_fn(list_of_samples)``. By default ``collate_fn`` is
``torch.utils.data.default_collate``: samples are tensors of equal shape (or tuples/dicts
of them) stacked along a new leading dimension B. Per-sample gradients are computed
with ``vmap``: each sample is seen as a batch of one (leading dim 1), so ``loss_fn`` must
treat the samples of a batch independently (no batch statistics, no cross-sample terms).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils._pytree import tree_flatten, tree_map

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def per_sample_loss(fn: Callable[[torch.nn.Module, Any], torch.Tensor]) -> LossFn:
    """Turn ``fn(model, sample) -> scalar`` into the batched ``loss_fn(model, batch) -> (B,)``.

    The batch is split along its leading dimension (tree-wise) and ``fn`` is called per
    sample. Inside the vmapped gradient path the extractor calls ``fn`` on the sample
    directly (no loop), so this adapter costs nothing there.
    """

    def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        leaves, _ = tree_flatten(batch)
        if not leaves:
            raise ValueError("per_sample_loss: empty batch")
        b = leaves[0].shape[0]
        out = [fn(model, tree_map(lambda t, i=i: t[i], batch)) for i in range(b)]
        return torch.stack([o.reshape(()) for o in out])

    loss_fn._direct_opt_single = fn  # type: ignore[attr-defined]
    loss_fn.__qualname__ = f"per_sample_loss({getattr(fn, '__qualname__', repr(fn))})"
    return loss_fn


def single_sample_fn(loss_fn: LossFn) -> Callable[[torch.nn.Module, Any], torch.Tensor] | None:
    """The scalar per-sample function behind a :func:`per_sample_loss` adapter, else None."""
    return getattr(loss_fn, "_direct_opt_single", None)


def batch_ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Deterministic micro-batch boundaries [(start, stop), ...] covering range(n)."""
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


def iter_batches(
    samples: Sequence[Any], ranges: Sequence[tuple[int, int]], collate: Callable[[list[Any]], Any] | None
) -> Iterator[tuple[int, int, int, Any]]:
    """Yield (batch_index, start, stop, collated_batch) for each range."""
    collate = collate or default_collate_samples
    for b, (s, e) in enumerate(ranges):
        yield b, s, e, collate([samples[i] for i in range(s, e)])


def default_collate_samples(samples: list[Any]) -> Any:
    """The collate used when ``collate_fn`` is None: token dicts of unequal length are right-padded
    (:func:`direct_opt.extract.hf.pad_collate`), everything else is ``default_collate``d."""
    from .hf import collate

    return collate(samples)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor leaf of a batch to ``device``; ``BatchEncoding``/Mapping batches (as
    ``transformers`` collators return) become plain dicts, which vmap can split."""
    from .hf import plain_batch

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, plain_batch(batch))


def data_fingerprint(samples: Sequence[Any], progress: bool = False, desc: str = "fingerprint") -> dict[str, Any]:
    """Count + SHA-256 of the samples' tensor/array bytes (None if they are not arrays).

    ``progress``: a tqdm bar over the samples (labelled ``desc``); this pass reads every sample.
    """
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    hashable = True
    for s in tqdm(samples, desc=desc, unit="sample", disable=not progress, dynamic_ncols=True, leave=False):
        leaves, spec = tree_flatten(s)
        h.update(str(spec).encode())
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                arr = leaf.detach().cpu().contiguous()
                h.update(f"{arr.dtype}{tuple(arr.shape)}".encode())
                h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes() if arr.numel() else b"")
            elif isinstance(leaf, np.ndarray):
                h.update(f"{leaf.dtype}{leaf.shape}".encode())
                h.update(np.ascontiguousarray(leaf).tobytes())
            elif isinstance(leaf, (int, float, str, bytes, bool)):
                h.update(repr(leaf).encode())
            else:
                hashable = False
                break
        if not hashable:
            break
    return {"n": len(samples), "sha256": h.hexdigest() if hashable else None}
