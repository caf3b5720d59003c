"""Sketchers: one micro-batch of samples -> (losses, sketches z, squared gradient norms).

A sketcher pairs the per-sample gradient engine with a projector:
* ``DenseSketcher`` — ``vmap(grad)`` per-sample gradients (B, d), then a flat projector;
* ``PaperSketcher`` — the paper's loop: one sample at a time, plain autograd, and the
  Gaussian matrix regenerated for every sample (benchmark baseline);
* ``KroneckerSketcher`` — a model projector (kronecker): forward/backward hooks on linear
  layers (no per-sample gradients of them).
Every sketcher checks the results for NaN/Inf and names the offending sample.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_map

from ..errors import ExtractionError
from .per_sample import PerSampleGrad
from .projectors import Projector

Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Sketcher:
    """Base: ``sketch(batch, b, start, role) -> (losses (B,), z (B, k), sq_norms (B,))``."""

    k: int
    projector: Any

    def _compute(self, batch: Any, b: int) -> Triple:
        raise NotImplementedError

    def sketch(self, batch: Any, b: int, start: int, role: str) -> Triple:
        """Compute and check one batch; ``start`` is the global index of its first sample."""
        losses, z, sq = self._compute(batch, b)
        for label, arr in (("loss", losses), ("gradient", sq), ("projected gradient", z)):
            bad = ~torch.isfinite(arr.reshape(b, -1)).all(1)
            if bool(bad.any()):
                i = start + int(torch.nonzero(bad)[0, 0])
                raise ExtractionError(
                    f"non-finite {label} for {role} sample {i} (NaN/Inf); drop or fix that sample, "
                    "or use dtype='float32' if mixed precision overflowed."
                )
        return losses.detach().cpu(), z.detach().cpu(), sq.detach().cpu()


class DenseSketcher(Sketcher):
    """Batched per-sample gradients (``vmap(grad)``) projected by a flat projector."""

    def __init__(self, engine: PerSampleGrad, projector: Projector) -> None:
        self.engine, self.projector, self.k = engine, projector, projector.k

    def _compute(self, batch: Any, b: int) -> Triple:
        losses, grads = self.engine.losses_and_grads(batch)
        flat = self.engine.flatten(grads)
        return losses, self.projector.project(flat), flat.square().sum(1)


class AdamSketcher(Sketcher):
    """A dense sketcher whose z holds [R g, R Γ(g)] (B, 2k): the plain sketch and the sketch of
    the Adam update direction Γ (:class:`~direct_opt.extract.adam.AdamDirection`) of each sample."""

    def __init__(self, plain: DenseSketcher, direction: Any) -> None:
        self.plain, self.direction = plain, direction
        self.engine, self.projector, self.k = plain.engine, plain.projector, plain.k

    def _compute(self, batch: Any, b: int) -> Triple:
        losses, grads = self.engine.losses_and_grads(batch)
        flat = self.engine.flatten(grads)
        z = torch.cat([self.projector.project(flat), self.projector.project(self.direction(flat))], 1)
        return losses, z, flat.square().sum(1)


class PaperSketcher(Sketcher):
    """One sample at a time with plain autograd; the projector regenerates its matrix per call."""

    def __init__(self, engine: PerSampleGrad, projector: Projector) -> None:
        self.engine, self.projector, self.k = engine, projector, projector.k

    def _compute(self, batch: Any, b: int) -> Triple:
        out_l, out_z, out_s = [], [], []
        for i in range(b):
            one = tree_map(lambda t: t[i : i + 1] if isinstance(t, torch.Tensor) else t, batch)
            loss, grads = self.engine.loss_and_grad_one(one)
            flat = self.engine.flatten(grads)
            out_l.append(loss)
            out_z.append(self.projector.project(flat))
            out_s.append(flat.square().sum(1))
        return torch.cat(out_l), torch.cat(out_z), torch.cat(out_s)


class KroneckerSketcher(Sketcher):
    """A ``input = "model"`` projector (Kronecker projection of linear layers + dense Gaussian
    fallback for the rest) sketching each batch from the model; ``fallback`` computes the
    per-sample gradients of its ``vmap_names`` (None when there are none)."""

    def __init__(self, engine: PerSampleGrad, projector: Projector, fallback: PerSampleGrad | None) -> None:
        self.engine, self.projector, self.fallback, self.k = engine, projector, fallback, projector.k

    def _compute(self, batch: Any, b: int) -> Triple:
        return self.projector.sketch_batch(self.engine, self.fallback, batch, b)
