"""Per-sample losses and cheap last-layer gradient features from one batched forward pass.

For a model whose last layer is ``nn.Linear`` (the LM head) with input h_t (D,) and output
z_t (V,) at position t, the per-sample gradient of ℓ_i w.r.t. that layer's weight is

    ∇_W ℓ_i = Σ_t δ_{i,t} h_{i,t}ᵀ,     δ_{i,t} = ∂ℓ_i / ∂z_{i,t}  (V,)

(+ Σ_t δ_{i,t} for a bias). One forward over the super-batch records h (a forward hook) and
makes z a leaf; one backward of Σ_i ℓ_i to z (the loss head only, not the network) gives
every δ_i at once. With V > ``sketch_dim`` the output side is sketched by a seeded Gaussian
S (V, k) with N(0, 1/k) entries (E[S Sᵀ] = I, so inner products are kept in expectation;
the LoGra/Kronecker idea): φ_i = vec(Σ_t (Sᵀδ_{i,t}) h_{i,t}ᵀ) ∈ R^{k·D}. Inner products
φ_iᵀφ_j ≈ ⟨∇_W ℓ_i, ∇_W ℓ_j⟩ — never a full per-sample gradient.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError


def last_linear(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The module called ``name`` (must be nn.Linear), or the last nn.Linear registered in ``model``."""
    if name is not None:
        mods = dict(model.named_modules())
        if name not in mods:
            raise InvalidParameterError(f"model has no module named {name!r} (layer=); e.g. {list(mods)[-3:]}.")
        if not isinstance(mods[name], nn.Linear):
            raise InvalidParameterError(f"layer {name!r} is a {type(mods[name]).__name__}, not nn.Linear.")
        return name, mods[name]
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise InvalidParameterError("the model has no nn.Linear layer for last-layer gradient features; "
                                    "pass layer='<module name>' of its output projection.")
    return found[-1]


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Parameters temporarily without requires_grad and the model in eval mode (both restored)."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    try:
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)


def check_losses(loss: Any, n: int) -> torch.Tensor:
    """``loss`` must be a (n,) tensor of per-sample losses; a clear error otherwise."""
    if not isinstance(loss, torch.Tensor):
        raise InvalidInputError(f"loss_fn must return a tensor of per-sample losses (n,) = ({n},); "
                                f"got {type(loss).__name__}.")
    if loss.dim() == 0:
        raise InvalidInputError(f"loss_fn returned a scalar (a batch mean); online selection needs one loss per "
                                f"sample, shape ({n},): use reduction='none' and average over tokens per sample.")
    if loss.dim() > 1 and loss.shape[0] == n:
        raise InvalidInputError(f"loss_fn returned per-token losses of shape {tuple(loss.shape)}; online selection "
                                f"needs one loss per sample, shape ({n},): reduce them, e.g. loss.mean(dim=1).")
    if tuple(loss.shape) != (n,):
        raise InvalidInputError(f"loss_fn must return per-sample losses of shape ({n},); got {tuple(loss.shape)}.")
    if not bool(torch.isfinite(loss).all()):
        i = int((~torch.isfinite(loss)).nonzero()[0])
        raise NonFiniteError(f"loss of candidate {i} is {float(loss[i])}; fix or drop it.")
    return loss


class LastLayerFeatures:
    """Per-sample losses + sketched last-layer gradient features of a model, batched.

    Args:
        layer: module name of the output nn.Linear (None: the model's last nn.Linear).
        sketch_dim: output-side sketch size k (used when the layer has more than k outputs).
        seed: seed of the sketch.
    """

    def __init__(self, layer: str | None = None, sketch_dim: int = 64, seed: int = 0) -> None:
        self.layer, self.sketch_dim, self.seed = layer, int(sketch_dim), int(seed)
        self._sketch: dict[tuple[int, str], torch.Tensor | None] = {}

    def _sketch_for(self, v: int, device: torch.device) -> torch.Tensor | None:
        key = (v, str(device))
        if key not in self._sketch:
            if v <= self.sketch_dim:
                self._sketch[key] = None
            else:
                gen = torch.Generator().manual_seed(self.seed)
                s = torch.randn(v, self.sketch_dim, generator=gen) / self.sketch_dim ** 0.5
                self._sketch[key] = s.to(device)
        return self._sketch[key]

    def __call__(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor], batch: Any, n: int,
                 other: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(losses (n,), features (n, d), first-order excess (n,) or None) of ``batch`` at ``model``.

        With ``other`` (a model of the same architecture, e.g. a reference), also returns
        ⟨∇_W ℓ_i, W − W_other⟩ (+ the bias term) of the layer: the first-order Taylor estimate of
        ℓ(x_i; θ) − ℓ(x_i; θ_other) restricted to the last layer (unsketched; no extra forward).
        """
        name, lin = last_linear(model, self.layer)
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []

        def hook(mod, inputs, output):
            z = output.detach().requires_grad_(True)
            seen.append((inputs[0].detach(), z))
            return z

        handle = lin.register_forward_hook(hook)
        try:
            with frozen(model), torch.enable_grad():
                loss = check_losses(loss_fn(model, batch), n)
                if len(seen) != 1:
                    raise InvalidInputError(
                        f"layer {name!r} ran {len(seen)} times in loss_fn(model, batch); last-layer features need "
                        "exactly one call per forward (pass layer= naming the output projection).")
                h, z = seen[0]
                (delta,) = torch.autograd.grad(loss.sum(), z)
        finally:
            handle.remove()
        if h.shape[0] != n or z.shape[0] != n:
            raise InvalidInputError(f"layer {name!r} saw a batch of {h.shape[0]} rows for {n} candidates; "
                                    "the model must keep the sample dimension first.")
        h = h.reshape(n, -1, h.shape[-1]).float()
        delta = delta.reshape(n, -1, delta.shape[-1]).float()
        first_order = None
        if other is not None:
            olin = dict(other.named_modules())[name]
            with torch.no_grad():
                dw = (lin.weight - olin.weight).float()
                lin_term = ((h @ dw.T) * delta).sum((1, 2))
                if lin.bias is not None:
                    lin_term = lin_term + (delta.sum(1) @ (lin.bias - olin.bias).float())
            first_order = lin_term.double().cpu().numpy()
        s = self._sketch_for(delta.shape[-1], delta.device)
        if s is not None:
            delta = delta @ s
        feats = torch.einsum("ntk,ntd->nkd", delta, h).reshape(n, -1)
        if lin.bias is not None:
            feats = torch.cat([feats, delta.sum(1)], dim=1)
        return loss.detach().double().cpu().numpy(), feats.double().cpu().numpy(), first_order
